"""``whisp process`` on a local folder, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.mediaprobe import duration
from whisp.testing.takes import make_take


def whisp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "whisp.consumer.cli", *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_process_prints_where_each_output_is(tmp_path: Path) -> None:
    make_take(tmp_path / "bob", duration=2.0, chunks=2)
    result = whisp("process", str(tmp_path / "bob"), "--out", str(tmp_path / "out"),
                   "--skip-transcription", "--audio-output", "m4a", "--crf", "30")  # fmt: skip
    assert result.returncode == 0, result.stderr
    video = tmp_path / "out" / "final_video_bob.mp4"
    assert f"video  {video}" in result.stdout
    assert "final_audio_bob.m4a" in result.stdout
    assert "captions skipped: not requested" in result.stdout
    assert abs(duration(video) - 2.0) < 0.1


def test_bad_input_exits_non_zero_with_one_clear_line(tmp_path: Path) -> None:
    make_take(tmp_path / "t", duration=1.0, chunks=3)
    (tmp_path / "t" / "video_1.webm").unlink()
    result = whisp("process", str(tmp_path / "t"), "--skip-transcription")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"whisp: {tmp_path / 't'}: missing chunks: video 1"
    ]


def test_unknown_prefix_is_explained(tmp_path: Path) -> None:
    result = whisp("process", "not/a/take")
    assert result.returncode == 2 and "neither a folder nor a take prefix" in result.stderr
