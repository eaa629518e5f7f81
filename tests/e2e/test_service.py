"""``whisp run`` end to end: R2 notifications from the queue emulator, a real S3 server."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from consumer.keys import KeyLayout, TakeRef
from consumer.sweep import Sweep
from tests.support.cfqueue import QueueEmulator, r2_event
from tests.support.harness import (
    QUEUE,
    env_for,
    put_marker,
    send_non_takes,
    status,
    upload,
    wait_for,
    whisp,
)
from tests.support.s3 import s3, s3_storage
from tests.support.takes import make_take

pytestmark = pytest.mark.slow
PREFIX = "recordings/meet-1/1/alice/"
STATUS = "recordings/meet-1/1/status_alice.json"


def state_is(bucket: str, *states: str, key: str = STATUS) -> Any:
    found = status(bucket, key)
    return found if found and found.get("state") in states else None


def fixture_uploaded(emulator: QueueEmulator, bucket: str, fixture_take: Path) -> None:
    """The Chromium take in the bucket, and only its marker's notification in the queue."""
    emulator.create_queue(QUEUE)
    upload(bucket, fixture_take, PREFIX, [p.name for p in sorted(fixture_take.glob("*.webm"))])
    put_marker(bucket, PREFIX, {}, emulator)


def test_take_from_notifications_to_outputs(
    emulator: QueueEmulator, bucket: str, fixture_take: Path, tmp_path: Path
) -> None:
    """Chunks and marker land, their events are pulled: outputs appear, messages acked."""
    emulator.create_queue(QUEUE)
    upload(
        bucket,
        fixture_take,
        PREFIX,
        [p.name for p in sorted(fixture_take.glob("*.webm"))],
        emulator,
    )
    put_marker(bucket, PREFIX, {"video_chunks": 8, "audio_chunks": 8, "language": "en"}, emulator)
    with whisp(env_for(emulator, bucket, tmp_path / "work"), tmp_path / "log") as w:
        done = wait_for(lambda: state_is(bucket, "done", "failed"), 120, "the take")
        wait_for(lambda: emulator.backlog(QUEUE) == 0, 10, "every message acknowledged")
        assert w.stop() == 0
    assert done["state"] == "done", done.get("error")
    assert done["attempts"] == 1 and done["captions"].startswith("embedded:")
    assert len(done["fingerprint"]["chunks"]) == 16
    client: Any = s3()
    heads = {
        role: client.head_object(Bucket=bucket, Key=out["key"])
        for role, out in done["outputs"].items()
    }
    assert heads["video"]["ContentType"] == "video/mp4"
    assert heads["srt"]["ContentType"] == "application/x-subrip"
    assert heads["transcript"]["ContentType"] == "application/json"
    assert done["outputs"]["video"]["key"] == "recordings/meet-1/1/final_video_alice.mp4"
    assert len(emulator.acked(QUEUE)) == 17
    lines = w.lines()
    take_lines = [line for line in lines if line.get("event") == "take done"]
    assert (
        take_lines
        and take_lines[0]["meeting_id"] == "meet-1"
        and take_lines[0]["user_id"] == "alice"
    )
    assert "testing-secret-value" not in w.log_path.read_text()


def test_duplicate_marker_on_two_consumers_is_processed_once(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """The same notification twice, two consumers at once: one does the work."""
    emulator.create_queue(QUEUE)
    make_take(tmp_path / "take", duration=2.0)
    upload(bucket, tmp_path / "take", PREFIX)
    put_marker(bucket, PREFIX, {"skip_transcription": True}, emulator)
    emulator.send(QUEUE, r2_event(PREFIX + "done.json", bucket=bucket))
    env = env_for(emulator, bucket, tmp_path / "work", CF_BATCH_SIZE=1)
    with whisp(env, tmp_path / "a.log") as a, whisp(env, tmp_path / "b.log") as b:
        done = wait_for(lambda: state_is(bucket, "done"), 90, "the take")
        wait_for(lambda: emulator.backlog(QUEUE) == 0, 40, "both messages settled")
        a.stop(), b.stop()
    assert done["attempts"] == 1
    assert len(a.events("take done")) + len(b.events("take done")) == 1


def test_consumer_killed_mid_take_is_finished_by_another(
    emulator: QueueEmulator, bucket: str, fixture_take: Path, tmp_path: Path
) -> None:
    """SIGKILL during the work: the marker's message was acknowledged at the claim, so
    the bucket carries the take: another consumer's sweep takes the stale lease over."""
    fixture_uploaded(emulator, bucket, fixture_take)
    env = env_for(
        emulator,
        bucket,
        tmp_path / "work",
        CF_VISIBILITY_TIMEOUT_MS=2000,
        LEASE_SECONDS=4,
        SWEEP_INTERVAL_SECONDS=1,
    )
    with whisp(env, tmp_path / "a.log") as a:
        wait_for(lambda: state_is(bucket, "processing"), 60, "work to start")
        a.stop(signal.SIGKILL)
    assert state_is(bucket, "processing") and emulator.backlog(QUEUE) == 0
    with whisp(env, tmp_path / "b.log") as b:
        done = wait_for(lambda: state_is(bucket, "done"), 120, "the take")
        b.stop()
    assert done["attempts"] == 2
    assert b.events("sweep found a take without a final status")
    assert b.events("lease taken over") and b.events("take done")


def test_marker_before_the_last_chunks_waits_for_them(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """Counts in the marker: missing chunks mean waiting, then the take is made whole."""
    emulator.create_queue(QUEUE)
    make_take(tmp_path / "take", duration=2.0, chunks=3)
    upload(
        bucket,
        tmp_path / "take",
        PREFIX,
        ["video_0.webm", "video_1.webm", "audio_0.webm"],
        emulator,
    )
    put_marker(
        bucket, PREFIX, {"video_chunks": 3, "audio_chunks": 3, "skip_transcription": True}, emulator
    )
    with whisp(
        env_for(emulator, bucket, tmp_path / "work", CHUNK_WAIT_SECONDS=20), tmp_path / "log"
    ) as w:
        waiting = wait_for(lambda: status(bucket, STATUS), 60, "a status")
        wait_for(lambda: (status(bucket, STATUS) or {}).get("stage") == "waiting for chunks", 30)
        waiting = status(bucket, STATUS)
        assert waiting is not None
        assert waiting["error"]["message"] == "missing chunks: video 2; audio 1, 2"
        upload(
            bucket,
            tmp_path / "take",
            PREFIX,
            ["video_2.webm", "audio_1.webm", "audio_2.webm"],
            emulator,
        )
        done = wait_for(lambda: state_is(bucket, "done", "failed"), 60, "the take")
        w.stop()
    assert done["state"] == "done" and len(done["fingerprint"]["chunks"]) == 6


def test_corrupt_take_fails_permanently_and_the_service_goes_on(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """Bad media: status failed with the reason, message acked, next take still done."""
    emulator.create_queue(QUEUE)
    make_take(tmp_path / "good", duration=1.0, chunks=2)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "video_0.webm").write_bytes(b"this is not a video" * 10)
    bad_prefix, bad_status = "recordings/meet-1/1/bob/", "recordings/meet-1/1/status_bob.json"
    upload(bucket, tmp_path / "bad", bad_prefix, None, emulator)
    put_marker(bucket, bad_prefix, {}, emulator)
    upload(bucket, tmp_path / "good", PREFIX, None, emulator)
    put_marker(bucket, PREFIX, {"skip_transcription": True}, emulator)
    with whisp(env_for(emulator, bucket, tmp_path / "work"), tmp_path / "log") as w:
        failed = wait_for(lambda: state_is(bucket, "failed", key=bad_status), 60, "the failure")
        done = wait_for(lambda: state_is(bucket, "done"), 60, "the good take")
        wait_for(lambda: emulator.backlog(QUEUE) == 0, 10, "every message acknowledged")
        assert w.proc.poll() is None
        w.stop()
    assert failed["error"] == {
        "kind": "bad_chunks",
        "message": "first video chunk video_0.webm is not media (no header)",
    }
    assert done["captions"] == "skipped: not requested"
    client: Any = s3()
    assert (
        client.get_object(Bucket=bucket, Key=bad_prefix + "video_0.webm")["Body"]
        .read()
        .startswith(b"this")
    )


def test_retryable_failure_ends_in_the_dead_letter_queue(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """The bucket goes away after start-up (which checks it): the take is retried with
    backoff up to max_retries, then dead-lettered."""
    emulator.create_queue(QUEUE, max_retries=2, dead_letter="dlq")
    env = env_for(emulator, bucket, tmp_path / "work")
    with whisp(env, tmp_path / "log") as w:
        wait_for(lambda: w.events("whisp started"), 60, "the start")
        client: Any = s3()
        client.delete_bucket(Bucket=bucket)
        emulator.send(QUEUE, r2_event(PREFIX + "done.json", bucket=bucket))
        wait_for(lambda: emulator.backlog("dlq") == 1, 60, "the dead letter")
        w.stop()
    assert emulator.backlog(QUEUE) == 0
    assert any("storage error" in str(line.get("event")) for line in w.lines())


def test_sigterm_lets_the_running_take_finish(
    emulator: QueueEmulator, bucket: str, fixture_take: Path, tmp_path: Path
) -> None:
    fixture_uploaded(emulator, bucket, fixture_take)
    with whisp(env_for(emulator, bucket, tmp_path / "work"), tmp_path / "log") as w:
        wait_for(
            lambda: (status(bucket, STATUS) or {}).get("stage", "").startswith("processing"), 60
        )
        assert w.stop(signal.SIGTERM, timeout=90) == 0
    assert state_is(bucket, "done")
    assert emulator.backlog(QUEUE) == 0


def test_sigterm_past_the_drain_leaves_the_take_to_the_sweep(
    emulator: QueueEmulator, bucket: str, fixture_take: Path, tmp_path: Path
) -> None:
    """A drain too short for the take: the lease is released (the message was settled at
    the claim), so the take is what any consumer's sweep picks up next."""
    fixture_uploaded(emulator, bucket, fixture_take)
    env = env_for(emulator, bucket, tmp_path / "work", DRAIN_SECONDS=0.2)
    with whisp(env, tmp_path / "log") as w:
        wait_for(
            lambda: (status(bucket, STATUS) or {}).get("stage", "").startswith("processing"), 60
        )
        started = time.monotonic()
        assert w.stop(signal.SIGTERM, timeout=30) == 0
        assert time.monotonic() - started < 20
    assert emulator.backlog(QUEUE) == 0 and len(emulator.acked(QUEUE)) == 1
    client: Any = s3()
    assert client.list_objects_v2(Bucket=bucket, Prefix=PREFIX + ".lock").get("KeyCount") == 0
    assert state_is(bucket, "processing")
    sweep = Sweep(s3_storage(bucket), KeyLayout())
    assert asyncio.run(sweep.pending(time.time())) == [TakeRef("meet-1", "1", "alice")]


def test_malformed_messages_and_hostile_keys_are_acknowledged(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """Nothing here is a take: all acknowledged, nothing written, the service runs on."""
    emulator.create_queue(QUEUE)
    send_non_takes(emulator, bucket)
    with whisp(env_for(emulator, bucket, tmp_path / "work"), tmp_path / "log") as w:
        wait_for(lambda: emulator.backlog(QUEUE) == 0, 30, "every message acknowledged")
        assert w.proc.poll() is None
        w.stop()
    client: Any = s3()
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    ignored = {line["key"]: line for line in w.events("key outside the layout ignored")}
    deep = ignored["recordings/m/t/u/v/done.json"]
    assert (deep["meeting_id"], deep["take"], deep["user_id"]) == ("m", "t", "u")
    assert not (tmp_path / "etc").exists()
