"""What real recorders leave behind: header-only chunks, skipped before the heavy work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import CorruptMedia
from pipeline.process import TakeOptions, process_take
from tests.support.mediaprobe import duration
from tests.support.takes import CLUSTER, add_header_only_chunk, make_take


def test_header_only_last_chunks_are_skipped_with_a_warning(tmp_path: Path) -> None:
    """A restarted recorder stopped at once uploads a header and no frame (110 bytes in
    Chromium, sometimes zero-padded): the take is made and says what was skipped, in the
    result (the status record) and in the JSON transcript."""
    spec = make_take(tmp_path / "in", duration=1.5, layout="restarted", chunks=3)
    audio = add_header_only_chunk(spec, "audio")
    video = add_header_only_chunk(spec, "video", padding=300)
    assert audio.stat().st_size < 300 and audio.read_bytes().find(CLUSTER) < 0
    result = process_take(tmp_path / "in", tmp_path / "out", tmp_path / "w", TakeOptions("u1"))
    skipped = [w for w in result.warnings if "holds no frames" in w]
    assert [w.split()[0] for w in skipped] == ["video_3.webm", "audio_3.webm"]
    assert duration(result.outputs["video"]) == pytest.approx(1.5, abs=0.1)
    transcript = json.loads(result.outputs["transcript"].read_text())
    assert transcript["warnings"] == result.warnings
    assert video.name in " ".join(transcript["warnings"])


def test_unreadable_chunk_that_held_media_fails_the_take_by_name(tmp_path: Path) -> None:
    """A chunk cut inside its first cluster held media: that is a failure, named by the
    chunk (no local path), found before anything is encoded."""
    make_take(tmp_path / "in", duration=1.5, layout="restarted", chunks=3)
    chunk = tmp_path / "in" / "video_1.webm"
    data = chunk.read_bytes()
    chunk.write_bytes(data[: data.find(CLUSTER) + 12])
    with pytest.raises(CorruptMedia) as err:
        process_take(tmp_path / "in", tmp_path / "out", tmp_path / "w", TakeOptions("u1"))
    assert str(err.value).startswith("video_1.webm cannot be read")
    assert str(tmp_path) not in str(err.value)
    assert not (tmp_path / "w" / "encoded.ts").exists()
