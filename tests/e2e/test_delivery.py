"""Takes longer than the queue's visibility timeout, end to end through ``whisp run``:
done once, never dead-lettered, never lost (issue 10). Real processes, the queue
emulator, the S3 server (versioned, to count every upload of a final video)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from consumer.keys import KeyLayout, TakeRef
from tests.support.cfqueue import QueueEmulator, r2_event
from tests.support.harness import (
    QUEUE,
    Whisp,
    env_for,
    put_marker,
    status,
    upload,
    uploads,
    versioned,
    wait_for,
    whisp,
)
from tests.support.s3proxy import S3Proxy, chunk_downloads, renewals_of_locks
from tests.support.takes import make_take

pytestmark = pytest.mark.slow
KEYS = KeyLayout()
TAKES = [TakeRef("meet", "1", f"user{i}") for i in range(8)]
VISIBILITY_MS = 1000  # shorter than any take below


def tiny_takes(bucket: str, folder: Path, refs: list[TakeRef]) -> None:
    """Takes of five seconds in the bucket (each longer to make than the visibility
    timeout), without their markers yet."""
    make_take(folder, duration=5.0, size=(640, 360), chunks=2)
    for ref in refs:
        upload(bucket, folder, KEYS.take_prefix(ref))


def markers(bucket: str, refs: list[TakeRef], emulator: QueueEmulator) -> None:
    for ref in refs:
        put_marker(bucket, KEYS.take_prefix(ref), {"skip_transcription": True}, emulator)


def record(bucket: str, ref: TakeRef) -> dict[str, Any]:
    return status(bucket, KEYS.status_key(ref)) or {}


def all_done(bucket: str, refs: list[TakeRef]) -> bool:
    return all(record(bucket, ref).get("state") == "done" for ref in refs)


def consumer_env(emulator: QueueEmulator, bucket: str, work: Path, **extra: object) -> Any:
    settings: dict[str, object] = {
        "CONCURRENCY": 1,
        "CF_VISIBILITY_TIMEOUT_MS": VISIBILITY_MS,
        "LEASE_SECONDS": 3,
        "SWEEP_INTERVAL_SECONDS": 1,
        # An encode slower than the visibility timeout, on an idle machine too.
        "VIDEO_PRESET": "slow",
    }
    return env_for(emulator, bucket, work, **{**settings, **extra})


def done_once(bucket: str, emulator: QueueEmulator, consumers: list[Whisp]) -> None:
    """Every take done, each final video uploaded once, nothing left or dead-lettered."""
    for ref in TAKES:
        assert uploads(bucket, KEYS.output_keys(ref, "wav")["video"]) == 1, ref
    assert sum(len(w.events("take done")) for w in consumers) == len(TAKES)
    assert emulator.backlog(QUEUE) == 0 and emulator.backlog("dlq") == 0
    assert max(record(bucket, ref)["elapsed"] for ref in TAKES) > VISIBILITY_MS / 1000


@pytest.mark.parametrize("kill", [False, True], ids=["both-live", "one-killed"])
def test_two_consumers_do_each_take_once_whatever_the_visibility_timeout(
    emulator: QueueEmulator, bucket: str, tmp_path: Path, kill: bool
) -> None:
    """Two consumers, one worker each, eight takes longer than the visibility timeout;
    with ``kill``, one is SIGKILLed in the middle of a take and not restarted: the other's
    sweep finishes it once its lease goes stale."""
    emulator.create_queue(QUEUE, max_retries=3, dead_letter="dlq")
    tiny_takes(versioned(bucket), tmp_path / "take", TAKES)
    env = consumer_env(emulator, bucket, tmp_path / "work")
    with whisp(env, tmp_path / "a.log") as a, whisp(env, tmp_path / "b.log") as b:
        wait_for(lambda: a.owner and b.owner, 30, "both consumers up")
        markers(bucket, TAKES, emulator)
        if kill:
            victim = wait_for(
                lambda: next(
                    (
                        ref
                        for ref in TAKES
                        if record(bucket, ref).get("owner") == a.owner
                        and record(bucket, ref).get("stage", "").startswith("processing")
                    ),
                    None,
                ),
                60,
                "a take in a's worker",
            )
            a.stop(signal.SIGKILL)
            wait_for(lambda: not a.processes(), 20, "a's workers to follow it")
        wait_for(lambda: all_done(bucket, TAKES), 180, "every take done")
        wait_for(lambda: emulator.backlog(QUEUE) == 0, 20, "every message settled")
        b.stop()
        a.stop()
    done_once(bucket, emulator, [a, b])
    if kill:
        assert record(bucket, victim)["owner"] == b.owner
        assert record(bucket, victim)["attempts"] == 2
        assert b.events("lease taken over")


def test_a_lost_lease_stops_the_losers_uploads(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """Consumer a reaches the bucket through a proxy that fails every renewal of a lock
    (and is slow to hand out chunks, so that the lease runs out before the take is made):
    a stops, uploads nothing, and b's sweep makes the take."""
    emulator.create_queue(QUEUE)
    ref = TAKES[0]
    tiny_takes(versioned(bucket), tmp_path / "take", [ref])
    with S3Proxy(
        os.environ["WHISP_TEST_S3"], fail=renewals_of_locks, slow=chunk_downloads, delay=4.0
    ) as proxy:
        env_a = consumer_env(
            emulator, bucket, tmp_path / "wa", S3_ENDPOINT_URL=proxy.url, LEASE_SECONDS=1.5
        )
        env_b = consumer_env(emulator, bucket, tmp_path / "wb")
        # The marker is there before a starts: a take found without one is followed, and
        # a follower has the chunks downloaded before the marker's lease is taken.
        markers(bucket, [ref], emulator)
        with whisp(env_a, tmp_path / "a.log") as a:
            wait_for(lambda: a.events("lease lost"), 60, "a's lease lost")
            with whisp(env_b, tmp_path / "b.log") as b:
                wait_for(lambda: all_done(bucket, [ref]), 90, "the take, made by b")
                b.stop()
            a.stop()
        put_by_a = [s.path for s in proxy.seen if s.method == "PUT" and not s.failed]
    outputs = KEYS.output_keys(ref, "wav").values()
    assert not [p for p in put_by_a if any(p.endswith(key) for key in outputs)]
    assert not a.events("take done") and b.events("take done")
    assert record(bucket, ref)["owner"] == b.owner and record(bucket, ref)["state"] == "done"
    # The loser's work folder went with its lease: its files are of no use (issue 11, 7).
    assert list((tmp_path / "wa").iterdir()) == []
    assert uploads(bucket, KEYS.output_keys(ref, "wav")["video"]) == 1


def test_the_same_marker_three_times_on_one_consumer_runs_once(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """CONCURRENCY=2 and three copies of one marker: one run; the copies are acknowledged
    (a retry would spend the queue's attempts), none is retried or dead-lettered."""
    emulator.create_queue(QUEUE, dead_letter="dlq")
    ref = TAKES[0]
    tiny_takes(versioned(bucket), tmp_path / "take", [ref])
    markers(bucket, [ref], emulator)
    for _ in range(2):
        emulator.send(QUEUE, r2_event(KEYS.marker_key(ref), bucket=bucket))
    env = consumer_env(emulator, bucket, tmp_path / "work", CONCURRENCY=2, BATCH_SIZE=3)
    with whisp(env, tmp_path / "log") as w:
        wait_for(lambda: all_done(bucket, [ref]), 90, "the take")
        wait_for(lambda: emulator.backlog(QUEUE) == 0, 20, "every copy settled")
        w.stop()
    assert len(w.events("take done")) == 1 and record(bucket, ref)["attempts"] == 1
    assert uploads(bucket, KEYS.output_keys(ref, "wav")["video"]) == 1
    assert emulator.queues[QUEUE].retried == [] and emulator.backlog("dlq") == 0
    assert len(emulator.acked(QUEUE)) == 3
