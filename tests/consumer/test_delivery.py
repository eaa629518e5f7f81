"""Delivery, in-process: pull what can start, claim then acknowledge, one run per take on
one consumer, late chunks waited for from the marker's time, the sweep as safety net."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from consumer.keys import KeyLayout, TakeRef
from consumer.take import Claim
from tests.support.cfqueue import QueueEmulator, r2_event
from tests.support.harness import QUEUE, put_marker, status, upload
from tests.support.inprocess import cloudflare_settings, running, take_job, until
from tests.support.s3 import s3_storage
from tests.support.takes import make_take

KEYS = KeyLayout()


def take(bucket: str, tmp_path: Path, user: str, emulator: QueueEmulator | None) -> TakeRef:
    """A tiny take in the bucket, its marker's notification in the queue."""
    ref = TakeRef("meet", "1", user)
    folder = tmp_path / "takes" / user
    if not folder.exists():
        make_take(folder, duration=1.0, chunks=1)
    upload(bucket, folder, KEYS.take_prefix(ref))
    put_marker(bucket, KEYS.take_prefix(ref), {"skip_transcription": True}, emulator)
    return ref


def state(bucket: str, ref: TakeRef) -> Any:
    found = status(bucket, KEYS.status_key(ref))
    return found.get("state") if found else None


async def test_only_what_a_free_worker_can_start_is_pulled(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """One worker, three takes: every pull asks for one message, none waits in memory."""
    emulator.create_queue(QUEUE)
    refs = [take(bucket, tmp_path, f"u{i}", emulator) for i in range(3)]
    async with running(cloudflare_settings(emulator, bucket, tmp_path / "w", batch_size=10)):
        for ref in refs:
            await until(lambda ref=ref: state(bucket, ref) == "done", 90, f"take {ref}")  # type: ignore[misc]
    pulls = emulator.queues[QUEUE].pulls
    assert pulls and set(pulls) == {1}
    assert emulator.backlog(QUEUE) == 0 and emulator.queues[QUEUE].retried == []


async def test_the_marker_is_acknowledged_once_its_take_is_claimed(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    emulator.create_queue(QUEUE)
    ref = take(bucket, tmp_path, "alice", emulator)
    async with running(cloudflare_settings(emulator, bucket, tmp_path / "w")):
        await until(lambda: emulator.backlog(QUEUE) == 0, 30, "the acknowledgement")
        assert state(bucket, ref) == "processing"  # acknowledged while the take runs
        await until(lambda: state(bucket, ref) == "done", 90, "the take")


async def test_the_same_marker_three_times_runs_once(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """CONCURRENCY=2: the duplicates of a take running here are acknowledged, not run."""
    emulator.create_queue(QUEUE)
    ref = take(bucket, tmp_path, "alice", emulator)
    for _ in range(2):
        emulator.send(QUEUE, r2_event(KEYS.marker_key(ref), bucket=bucket))
    settings = cloudflare_settings(emulator, bucket, tmp_path / "w", concurrency=2)
    with structlog.testing.capture_logs() as logs:
        async with running(settings) as service:
            await until(lambda: state(bucket, ref) == "done", 90, "the take")
            await until(lambda: emulator.backlog(QUEUE) == 0, 20, "every copy acknowledged")
    assert service.takes_handled == 1 and emulator.queues[QUEUE].retried == []
    assert [e["event"] for e in logs].count("take done") == 1
    assert status(bucket, KEYS.status_key(ref))["attempts"] == 1  # type: ignore[index]


async def test_missing_chunks_are_waited_for_until_the_deadline_then_fail(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """CHUNK_WAIT_SECONDS from the marker's time: retried meanwhile, then a clear failure."""
    emulator.create_queue(QUEUE, max_retries=5, dead_letter="dlq")
    ref = TakeRef("meet", "1", "bob")
    make_take(tmp_path / "take", duration=1.0, chunks=2)
    upload(bucket, tmp_path / "take", KEYS.take_prefix(ref), ["video_0.webm", "audio_0.webm"])
    marker = {"video_chunks": 2, "audio_chunks": 2, "skip_transcription": True}
    put_marker(bucket, KEYS.take_prefix(ref), marker, emulator)
    settings = cloudflare_settings(emulator, bucket, tmp_path / "w", chunk_wait_seconds=2)
    async with running(settings):
        failed = await until(lambda: state(bucket, ref) == "failed", 30, "the failure")
        await until(lambda: emulator.backlog(QUEUE) == 0, 10, "the message acknowledged")
    record = status(bucket, KEYS.status_key(ref))
    assert record and record["error"]["message"] == "missing chunks: video 1; audio 1"
    assert failed and emulator.queues[QUEUE].retried and emulator.backlog("dlq") == 0


async def test_events_of_another_bucket_are_acknowledged_and_ignored(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    emulator.create_queue(QUEUE)
    ref = TakeRef("meet", "1", "eve")
    put_marker(bucket, KEYS.take_prefix(ref), {}, None)
    emulator.send(QUEUE, r2_event(KEYS.marker_key(ref), bucket="someone-elses"))
    with structlog.testing.capture_logs() as logs:
        async with running(cloudflare_settings(emulator, bucket, tmp_path / "w")):
            await until(lambda: emulator.backlog(QUEUE) == 0, 10, "the acknowledgement")
    assert state(bucket, ref) is None
    assert any(e["event"] == "event of another bucket ignored" for e in logs)


async def test_the_sweep_finishes_a_take_whose_consumer_died_after_claiming_it(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """Claimed, its message acknowledged, then its consumer gone: the lease goes stale and
    another consumer's sweep takes the take over. No message is involved."""
    emulator.create_queue(QUEUE)
    ref = take(bucket, tmp_path, "carol", None)
    storage = s3_storage(bucket)
    dead = await take_job(storage, "dead-consumer", tmp_path, lease_seconds=1).claim(ref)
    assert isinstance(dead, Claim) and dead.lease._renewer is not None
    dead.lease._renewer.cancel()  # the consumer died: nobody renews, nobody releases
    settings = cloudflare_settings(emulator, bucket, tmp_path / "w", sweep_interval_seconds=0.3)
    with structlog.testing.capture_logs() as logs:
        async with running(settings):
            await until(lambda: state(bucket, ref) == "done", 90, "the swept take")
    events = [e["event"] for e in logs]
    assert "sweep found a take without a final status" in events
    assert "lease taken over" in events
    assert status(bucket, KEYS.status_key(ref))["attempts"] == 2  # type: ignore[index]
    await storage.close()
