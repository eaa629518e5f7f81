"""Media that lies or breaks: what an adversarial run found, kept fixed."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from pipeline.errors import BadChunks, CorruptMedia, LimitExceeded, reason
from pipeline.options import MediaOptions
from pipeline.process import TakeOptions, TakeResult, process_take
from tests.support.mediaprobe import duration
from tests.support.takes import make_take, recut_evenly, resized_split_take


def run(folder: Path, tmp: Path, media: MediaOptions | None = None) -> TakeResult:
    options = TakeOptions("u1", media=media or MediaOptions(), transcribe=False)
    return process_take(folder, tmp / "out", tmp / "work", options)


def test_a_size_change_past_the_limit_inside_the_stream_is_refused(tmp_path: Path) -> None:
    """The header says 160x120 (within the limit), later keyframes are 320x240: every
    decoded picture is checked, not only the header."""
    resized_split_take(tmp_path / "in", first=(160, 120), then=(320, 240))
    limit = MediaOptions(max_width=160, max_height=120)
    with pytest.raises(LimitExceeded, match="320x240, over the limit of 160x120"):
        run(tmp_path / "in", tmp_path, limit)
    run(tmp_path / "in", tmp_path / "no-limit")  # within limits the take is made


def test_a_damaged_chunk_is_reported_with_the_seconds_lost(tmp_path: Path) -> None:
    """Random bytes instead of the last quarter of a split video: the demuxer stops there
    without an error; the take is made and says about how much video was lost."""
    make_take(tmp_path / "in", duration=4.0, chunks=3)
    last = recut_evenly(tmp_path / "in", "video", 4)[-1]
    last.write_bytes(random.Random(1).randbytes(last.stat().st_size))
    result = run(tmp_path / "in", tmp_path)
    lost = [w for w in result.warnings if "of the video track could not be read" in w]
    assert len(lost) == 1, result.warnings
    seconds = float(re.findall(r"about ([0-9.]+) s", lost[0])[0])
    assert 0.7 < seconds < 1.3  # a quarter of 4 s
    assert duration(result.outputs["video"]) == pytest.approx(4.0, abs=0.1)  # audio intact


def test_a_take_that_lost_most_of_a_track_fails(tmp_path: Path) -> None:
    """A first chunk cut to 500 bytes: the demuxer finds its way back only much later,
    and what is left is not the recording (61 of 161 frames in the adversarial run)."""
    make_take(tmp_path / "in", duration=4.0, chunks=3)
    first = recut_evenly(tmp_path / "in", "video", 4)[0]
    first.write_bytes(first.read_bytes()[:500])
    with pytest.raises(CorruptMedia, match="most of the video track cannot be read"):
        run(tmp_path / "in", tmp_path)


@pytest.mark.parametrize("layout", ["split", "restarted"])
def test_errors_name_the_chunk_never_a_local_path(tmp_path: Path, layout: str) -> None:
    """FFmpeg puts the file's path in its messages; the status record gets the chunk's
    name and FFmpeg's reason only."""
    make_take(tmp_path / "in", duration=1.5, chunks=3, layout=layout)  # type: ignore[arg-type]
    chunk = tmp_path / "in" / "video_0.webm"
    data = bytearray(chunk.read_bytes())
    data[8:300] = b"\xff" * 292  # the header past the magic bytes: tracks unreadable
    chunk.write_bytes(bytes(data))
    with pytest.raises(CorruptMedia) as err:
        run(tmp_path / "in", tmp_path)
    assert str(err.value) == "video_0.webm cannot be read: Invalid data found when processing input"


def test_reason_strips_paths_from_any_message() -> None:
    assert (
        reason(OSError(5, "Input/output error", "/tmp/w/chunks/a_1.webm")) == "Input/output error"
    )
    assert (
        reason(ValueError("cannot open '/tmp/w/x/video_3.webm' now"))
        == "cannot open video_3.webm now"
    )


def test_a_restarted_chunk_without_video_is_named(tmp_path: Path) -> None:
    """Seen while fuzzing: a restarted video chunk swapped for an audio recording failed
    the take as "video chunks hold no video stream", naming no chunk."""
    make_take(tmp_path / "in", duration=1.5, chunks=3, layout="restarted")
    (tmp_path / "in" / "audio_1.webm").replace(tmp_path / "in" / "video_1.webm")
    (tmp_path / "in" / "audio_2.webm").replace(tmp_path / "in" / "audio_1.webm")
    with pytest.raises(BadChunks) as err:
        run(tmp_path / "in", tmp_path)
    assert str(err.value) == "no video stream in video_1.webm"


def test_a_damaged_copied_h264_packet_is_left_out_with_a_warning(tmp_path: Path) -> None:
    """Found by fuzzing: the middle chunk of a split H.264 take lost (empty, skipped), the
    next one starts inside a packet. Copied, that packet's NAL lengths run past its end
    and the MPEG-TS muxer raised InvalidDataError (with the work file's path) out of the
    pipeline. It is left out and told."""
    make_take(tmp_path / "in", duration=1.5, size=(160, 120), chunks=3, video_codec="h264")
    (tmp_path / "in" / "video_1.mkv").write_bytes(b"")
    result = run(tmp_path / "in", tmp_path)
    assert result.video is not None and result.video["copied"] is True
    assert "1 damaged video packet could not be copied" in result.warnings
    assert "video_1.mkv is empty and was skipped" in result.warnings
