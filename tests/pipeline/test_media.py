"""Joining, re-timing and encoding real media, checked by reading the outputs back."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pipeline.captions import Cue
from pipeline.chunks import plan_take
from pipeline.encode import encode_take
from pipeline.errors import LimitExceeded, MissingChunks
from pipeline.mux import mux_final
from pipeline.options import MediaOptions
from pipeline.process import TakeOptions, TakeResult, process_take
from tests.support.mediaprobe import (
    audio_samples,
    duration,
    moov_before_mdat,
    streams,
    subtitles,
)
from tests.support.takes import _video_times, make_take

FRAME = 1 / 30


def run(folder: Path, tmp: Path, **options: object) -> TakeResult:
    opts = TakeOptions(user_id="u1", transcribe=False, **options)  # type: ignore[arg-type]
    return process_take(folder, tmp / "out", tmp / "work", opts)


def video_of(result: TakeResult) -> dict[str, Any]:
    assert result.video is not None
    return result.video


def test_chromium_fixture_becomes_a_full_length_h264_aac_mp4(
    fixture_take: Path, tmp_path: Path
) -> None:
    """The real take: every frame kept, H.264 yuv420p + AAC, faststart, the full 15 s."""
    result = run(fixture_take, tmp_path)
    out = result.outputs["video"]
    info = streams(out)
    assert info["video"].codec == "h264" and info["video"].pix_fmt == "yuv420p"
    assert info["audio"].codec == "aac"
    assert info["video"].packets == 218  # the source's frames, none duplicated or lost
    assert 14.8 < duration(out) < 15.2
    assert moov_before_mdat(out)
    assert video_of(result)["layout"] == "split"
    assert result.outputs["audio"].name == "final_audio_u1.wav"
    assert abs(duration(result.outputs["audio"]) - 15.0) < 0.1


@pytest.mark.parametrize(
    ("codec", "layout", "chunks"),
    [("vp8", "split", 5), ("vp9", "split", 3), ("vp8", "restarted", 4), ("vp8", "av", 4)],
)
def test_layouts_keep_every_frame_and_the_length(
    tmp_path: Path, codec: Any, layout: Any, chunks: int
) -> None:
    """Split at arbitrary byte offsets, restarted per chunk, or one recorder: same result."""
    spec = make_take(
        tmp_path / "in",
        duration=3.0,
        video_codec=codec,
        layout=layout,
        chunks=chunks,
    )
    result = run(tmp_path / "in", tmp_path)
    info = streams(result.outputs["video"])
    assert info["video"].packets == spec.video_frames
    assert abs(info["video"].end - 3.0) <= 2 * FRAME
    # A restarted recorder pads each file's last Opus frame: up to 20 ms a chunk.
    assert abs(info["audio"].end - 3.0) <= (0.05 if layout != "restarted" else 0.02 * chunks)
    assert info["video"].pts == sorted(set(info["video"].pts))  # strictly increasing
    assert video_of(result)["dropped_frames"] == 0


def test_restarted_chunks_continue_instead_of_overlapping(tmp_path: Path) -> None:
    """Each restarted file's timestamps start at 0; joined, they follow one another."""
    make_take(tmp_path / "in", duration=4.0, layout="restarted", chunks=4)
    result = run(tmp_path / "in", tmp_path)
    pts = streams(result.outputs["video"])["video"].pts
    gaps = np.diff(pts)
    assert gaps.min() > 0 and gaps.max() < 2.5 * FRAME  # no jump back, no hole at a joint
    assert 3.9 < duration(result.outputs["video"]) < 4.1


def test_variable_frame_rate_is_kept_not_made_constant(tmp_path: Path) -> None:
    """Dropped frames stay dropped: output times are the source's times."""
    spec = make_take(tmp_path / "in", duration=3.0, vfr=True, seed=7)
    result = run(tmp_path / "in", tmp_path)
    out = streams(result.outputs["video"])["video"]
    expected = _video_times(3.0, 30.0, True, 7)
    assert out.packets == spec.video_frames == len(expected)
    assert np.allclose(out.pts, expected, atol=0.002)


def test_gap_in_audio_is_filled_with_silence(tmp_path: Path) -> None:
    """A pause in both recordings: the audio stays continuous, silent over the gap."""
    make_take(tmp_path / "in", duration=4.0, gap=(1.5, 1.0))
    result = run(tmp_path / "in", tmp_path)
    samples, rate = audio_samples(result.outputs["audio"])
    assert abs(len(samples) / rate - 4.0) < 0.05
    gap = samples[int(1.6 * rate) : int(2.4 * rate)]
    around = samples[int(0.5 * rate) : int(1.4 * rate)]
    assert np.abs(gap).max() < 0.01
    assert np.abs(around).max() > 0.2
    assert duration(result.outputs["video"]) == pytest.approx(4.0, abs=0.1)


def test_late_audio_is_aligned_to_the_common_start(tmp_path: Path) -> None:
    """Audio that starts 0.5 s after the video keeps that offset: silence first."""
    make_take(tmp_path / "in", duration=3.0, layout="av", audio_start=0.5)
    result = run(tmp_path / "in", tmp_path)
    samples, rate = audio_samples(result.outputs["audio"])
    loud = np.flatnonzero(np.abs(samples) > 0.1)
    assert loud[0] / rate == pytest.approx(0.5, abs=0.03)
    info = streams(result.outputs["video"])
    assert info["video"].first == pytest.approx(0.0, abs=0.001)
    assert info["audio"].first is not None and info["audio"].first < 0.03


def test_h264_source_is_copied_not_reencoded(tmp_path: Path) -> None:
    """Chromium's codecs=h264: the packets in the MP4 are the source's packets."""
    spec = make_take(tmp_path / "in", duration=2.0, video_codec="h264", chunks=3)
    result = run(tmp_path / "in", tmp_path)
    assert video_of(result)["copied"] is True
    whole = tmp_path / "whole.mkv"
    whole.write_bytes(b"".join((tmp_path / "in" / f"video_{i}.mkv").read_bytes() for i in range(3)))
    with av.open(str(whole)) as c:
        source = [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]
    with av.open(str(result.outputs["video"])) as c:
        output = [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]
    assert len(output) == spec.video_frames == len(source)
    # The same coded pictures: the intermediate MPEG-TS adds access unit delimiters and
    # puts the parameter sets in band at keyframes; no coded slice is changed.
    for out, src in zip(output, source, strict=True):
        added = nal_units(out)
        for unit in nal_units(src):
            added.remove(unit)
        assert {u[0] & 0x1F for u in added} <= {7, 8, 9}


def nal_units(packet: bytes) -> list[bytes]:
    """The NAL units of a length-prefixed (MP4/Matroska) H.264 packet."""
    units, i = [], 0
    while i < len(packet):
        size = int.from_bytes(packet[i : i + 4], "big")
        units.append(packet[i + 4 : i + 4 + size])
        i += 4 + size
    return units


def test_720p_take_keeps_its_size(tmp_path: Path) -> None:
    make_take(tmp_path / "in", duration=1.0, size=(1280, 720), chunks=2)
    result = run(tmp_path / "in", tmp_path)
    assert (video_of(result)["width"], video_of(result)["height"]) == (1280, 720)
    with av.open(str(result.outputs["video"])) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.width, cc.height) == (1280, 720)


def test_truncated_last_chunk_is_decoded_as_far_as_it_goes(tmp_path: Path) -> None:
    """A client that stopped mid-upload: the take is made from what is there."""
    spec = make_take(tmp_path / "in", duration=3.0, chunks=3)
    last = tmp_path / "in" / "video_2.webm"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    result = run(tmp_path / "in", tmp_path)
    frames = streams(result.outputs["video"])["video"].packets
    assert spec.video_frames * 0.5 < frames < spec.video_frames


def test_missing_middle_chunk_fails_with_its_name(tmp_path: Path) -> None:
    make_take(tmp_path / "in", duration=2.0, chunks=4)
    (tmp_path / "in" / "audio_1.webm").unlink()
    with pytest.raises(MissingChunks, match="audio 1"):
        run(tmp_path / "in", tmp_path)


def test_take_without_audio_has_no_audio_and_says_why(tmp_path: Path) -> None:
    make_take(tmp_path / "in", duration=1.0, audio=None, chunks=2)
    result = process_take(tmp_path / "in", tmp_path / "out", tmp_path / "w", TakeOptions("u1"))
    assert result.captions == "skipped: no audio"
    assert "audio" not in streams(result.outputs["video"])
    assert set(result.outputs) == {"video"}


def test_duration_limit_stops_a_long_take(tmp_path: Path) -> None:
    make_take(tmp_path / "in", duration=3.0)
    with pytest.raises(LimitExceeded, match="longer than the limit of 1 s"):
        run(tmp_path / "in", tmp_path, media=MediaOptions(max_duration=1.0))


def test_resolution_limit_is_checked_before_decoding(tmp_path: Path) -> None:
    make_take(tmp_path / "in", duration=1.0, size=(640, 480))
    with pytest.raises(LimitExceeded, match="640x480"):
        run(tmp_path / "in", tmp_path, media=MediaOptions(max_width=320, max_height=240))


def test_m4a_audio_output_is_the_aac_track(tmp_path: Path) -> None:
    make_take(tmp_path / "in", duration=2.0)
    result = run(tmp_path / "in", tmp_path, media=MediaOptions(audio_output="m4a"))
    audio = result.outputs["audio"]
    assert audio.name == "final_audio_u1.m4a"
    info = streams(audio)
    assert set(info) == {"audio"} and info["audio"].codec == "aac"
    assert duration(audio) == pytest.approx(2.0, abs=0.05)


def test_subtitle_track_has_the_cues_and_never_cuts_the_video(tmp_path: Path) -> None:
    """The mov_text track holds the cues with the language, and the MP4 keeps its length
    though the last cue ends early (the original service cut the video there)."""
    make_take(tmp_path / "in", duration=3.0)
    plan = plan_take(tmp_path / "in")
    encoded = encode_take(plan, tmp_path / "work", MediaOptions(speech=False))
    cues = [Cue(0.2, 0.9, "Hello there"), Cue(1.0, 1.5, "two lines\nof text")]
    out = tmp_path / "final.mp4"
    mux_final(encoded.path, out, cues, "en")
    assert duration(out) == pytest.approx(3.0, abs=0.05)
    assert moov_before_mdat(out)
    info = streams(out)
    assert info["subtitle"].codec == "mov_text" and info["subtitle"].language == "eng"
    got = subtitles(out)
    assert [(round(s, 3), round(e, 3)) for s, e, _ in got] == [(0.2, 0.9), (1.0, 1.5)]
    assert "Hello there" in got[0][2]
    assert "two lines" in got[1][2] and "of text" in got[1][2]


def test_corrupt_middle_bytes_do_not_fail_the_take(tmp_path: Path) -> None:
    """Garbage inside a split stream: the demuxer resyncs; the take is made."""
    make_take(tmp_path / "in", duration=3.0, chunks=3)
    shutil.copyfile(tmp_path / "in" / "video_1.webm", tmp_path / "keep")
    (tmp_path / "in" / "video_1.webm").write_bytes(b"\x00garbage" * 500)
    result = run(tmp_path / "in", tmp_path)
    assert 0 < streams(result.outputs["video"])["video"].packets < 90


def test_worker_reports_its_stage_for_the_status_record(tmp_path: Path) -> None:
    """What the consumer copies into the status record while a worker runs."""
    from consumer.workers import _process, read_progress

    make_take(tmp_path / "in", duration=1.0)
    progress = tmp_path / "progress.json"
    assert read_progress(progress) is None
    _process(
        tmp_path / "in",
        tmp_path / "out",
        tmp_path / "w",
        TakeOptions("u", transcribe=False),
        progress,
    )
    assert read_progress(progress) == {"stage": "done", "progress": 1.0}
