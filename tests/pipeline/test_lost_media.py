"""Media lost where no byte counter sees it, told by time; ordinary takes tell nothing."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.demux import TrackBytes
from pipeline.losses import Coverage, track_losses
from pipeline.process import TakeOptions, TakeResult, process_take
from tests.support.takes import CLUSTER, make_resized_take, make_take


def run(folder: Path, tmp: Path) -> TakeResult:
    return process_take(folder, tmp / "out", tmp / "work", TakeOptions("u1", transcribe=False))


def seconds_lost(warning: str) -> float:
    return float(re.findall(r"about ([0-9.]+) s", warning)[0])


def test_a_cluster_replaced_by_a_little_garbage_is_reported_with_its_seconds(
    fixture_take: Path, tmp_path: Path
) -> None:
    """The real take's audio with its fourth cluster (2 s) replaced by 4,000 random bytes:
    the demuxer skips the garbage (under its slack, so no byte is counted lost) and goes
    on at the next cluster. Only the jump in the audio's times tells the loss."""
    take = tmp_path / "in"
    shutil.copytree(fixture_take, take, ignore=shutil.ignore_patterns("*.md"))
    chunks = sorted(take.glob("audio_*.webm"), key=lambda p: int(p.stem.split("_")[1]))
    data = b"".join(p.read_bytes() for p in chunks)
    clusters = [m.start() for m in re.finditer(re.escape(CLUSTER), data)]
    damaged = data[: clusters[3]] + random.Random(4).randbytes(4000) + data[clusters[4] :]
    step = -(-len(damaged) // len(chunks))
    for i, path in enumerate(chunks):
        path.chmod(0o644)
        path.write_bytes(damaged[i * step : (i + 1) * step])
    result = run(take, tmp_path)
    assert len(result.warnings) == 1, result.warnings
    warning = result.warnings[0]
    assert warning.startswith("about ") and "of the audio track could not be read" in warning
    assert seconds_lost(warning) == pytest.approx(2.0, abs=0.2)
    ((start, end),) = re.findall(r"no audio from ([0-9.]+) s to ([0-9.]+) s", warning)
    assert float(start) == pytest.approx(6.1, abs=0.2)
    assert float(end) == pytest.approx(8.1, abs=0.2)


def test_the_real_take_tells_no_loss(fixture_take: Path, tmp_path: Path) -> None:
    """Chromium's own take: video at about 20 fps with frames 0.2 s apart at worst, and
    a video that ends 0.7 s before the audio (two recorders stop apart)."""
    assert run(fixture_take, tmp_path).warnings == []


@pytest.mark.parametrize(
    "take",
    [
        {"layout": "split", "chunks": 5},
        {"layout": "restarted", "chunks": 4},
        {"layout": "av", "chunks": 3, "audio_start": 0.8},
        {"layout": "split", "vfr": True, "seed": 3},
        {"layout": "split", "video_codec": "h264"},
        {"layout": "split", "video_codec": None},
        {"layout": "split", "audio": None},
    ],
    ids=["split", "restarted", "av-late-audio", "vfr", "h264-copied", "audio-only", "no-audio"],
)
def test_ordinary_takes_tell_no_loss(tmp_path: Path, take: dict[str, Any]) -> None:
    make_take(tmp_path / "in", duration=4.0, **take)
    assert run(tmp_path / "in", tmp_path).warnings == []


def test_a_resized_take_tells_no_loss(tmp_path: Path) -> None:
    make_resized_take(tmp_path / "in", layout="split")
    assert run(tmp_path / "in", tmp_path).warnings == []


def test_a_track_that_ends_early_is_told_by_how_much(tmp_path: Path) -> None:
    """The video's last two chunks (3 s of 6) never made it past the client, yet the
    marker did not count chunks: nothing of the bytes present is lost, the end is."""
    make_take(tmp_path / "in", duration=6.0, chunks=4, layout="restarted")
    for n in (2, 3):
        (tmp_path / "in" / f"video_{n}.webm").unlink()
    (warning,) = run(tmp_path / "in", tmp_path).warnings
    assert "of the video track could not be read (the video ends 3.0 s before the take)" in warning
    assert seconds_lost(warning) == pytest.approx(3.0, abs=0.1)


def test_losses_keep_to_one_short_line_however_many_gaps() -> None:
    video = Coverage("video")
    for t in range(0, 20_000, 2):  # a frame every 2 s: 9,999 gaps
        video.add(t, t)
    warning = track_losses(TrackBytes("video", 10_000, lost=100), [video], 25_000.0, 25_000.0)
    assert warning is not None and len(warning) < 300 and "\n" not in warning
    assert warning.count("no video from") == 3 and "9996 more gaps" in warning
    assert "the video ends 5002.0 s before the take" in warning
    assert seconds_lost(warning) == pytest.approx(9_999 * 2 + 5_002, abs=1)


def test_nothing_lost_is_no_warning() -> None:
    audio = Coverage("audio")
    for n in range(100):
        audio.add(n * 0.02, (n + 1) * 0.02)
    audio.add(2.5, 2.52)  # 0.5 s without audio: under MAX_GAP
    assert track_losses(TrackBytes("audio", 1000), [audio], 3.5, 3.5) is None  # ends 0.98 s early
