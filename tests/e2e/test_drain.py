"""The drain is bounded by DRAIN_SECONDS: the workers are stopped for real, the attempt
is recorded as interrupted and its lease released, for another consumer to take over."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.harness import local_env, read_status, wait_for, whisp
from tests.support.takes import make_take

pytestmark = pytest.mark.slow
TAKE = Path("recordings/m1/1/alice")
STATUS = Path("recordings/m1/1/status_alice.json")


def test_the_drain_ends_at_drain_seconds_and_stops_the_workers(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    make_take(root / TAKE, duration=12.0, size=(640, 480), chunks=4, audio=None)
    # veryslow: an encode that outlasts the drain by far, on an idle machine too
    env = local_env(root, tmp_path / "work", DRAIN_SECONDS=2, VIDEO_PRESET="veryslow")
    with whisp(env, tmp_path / "log") as w:
        wait_for(lambda: w.events("whisp started"), 60, "the start")
        (root / TAKE / "done.json").write_text('{"skip_transcription": true}')
        wait_for(
            lambda: any(line.get("stage") == "encode" for line in w.events("stage started")),
            60,
            "the encode",
        )
        started = time.monotonic()
        assert w.stop(timeout=30) == 0
        took = time.monotonic() - started
    assert took < 2 + 4, f"took {took:.1f} s to stop"
    assert w.events("worker processes stopped")
    record = read_status(root / STATUS) or {}
    assert (record.get("state"), record.get("stage")) == ("processing", "interrupted")
    assert record["last_error"]["kind"] == "interrupted"
    assert record["next_try_at"] <= record["updated_at"]  # another consumer may go on now
    assert not (root / TAKE / ".lock").exists()
    assert not (root / "recordings/m1/1/final_video_alice.mp4").exists()
