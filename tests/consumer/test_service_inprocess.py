"""The service's loop, run in the test's own event loop against the real S3 server and
the queue emulator: the same behaviour as the subprocess tests, a failure at a line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from consumer.keys import KeyLayout, TakeRef
from consumer.marker import MAX_MARKER_BYTES
from tests.support.cfqueue import QueueEmulator, r2_event
from tests.support.harness import QUEUE, put_marker, send_non_takes, status, upload
from tests.support.inprocess import cloudflare_settings, running, until
from tests.support.s3 import s3
from tests.support.takes import make_take

REF = TakeRef("meet-1", "1", "alice")
KEYS = KeyLayout()
PREFIX = KEYS.take_prefix(REF)
STATUS = KEYS.status_key(REF)


def final(bucket: str) -> dict[str, Any] | None:
    found = status(bucket, STATUS)
    return found if found and found.get("state") in ("done", "failed") else None


async def test_marker_notification_to_done_with_chunk_events_acked(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    emulator.create_queue(QUEUE)
    make_take(tmp_path / "take", duration=1.0, chunks=2)
    upload(bucket, tmp_path / "take", PREFIX, None, emulator)
    put_marker(bucket, PREFIX, {"skip_transcription": True}, emulator)
    async with running(cloudflare_settings(emulator, bucket, tmp_path / "work")) as service:
        done = await until(lambda: final(bucket), 60, "the take")
        await until(lambda: emulator.backlog(QUEUE) == 0, 10, "every message settled")
    assert done["state"] == "done", done.get("error")
    assert done["outputs"]["video"]["key"] == KEYS.output_keys(REF, "wav")["video"]
    assert len(emulator.acked(QUEUE)) == 5 and service.takes_handled == 1
    assert s3().head_object(Bucket=bucket, Key=done["outputs"]["video"]["key"])["ContentLength"]


async def test_nothing_but_markers_of_the_layout_is_a_take(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    emulator.create_queue(QUEUE)
    sent = send_non_takes(emulator, bucket)
    async with running(cloudflare_settings(emulator, bucket, tmp_path / "work")) as service:
        await until(lambda: emulator.backlog(QUEUE) == 0, 20, "every message acknowledged")
        assert service.running == set() and service.deliveries == set()
    assert s3().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert len(emulator.acked(QUEUE)) == sent
    assert emulator.queues[QUEUE].retried == []


async def test_an_oversized_marker_fails_the_take_unread(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """Over 64 KiB: failed as a bad marker, the message acknowledged, the body never read."""
    emulator.create_queue(QUEUE)
    make_take(tmp_path / "take", duration=1.0, chunks=1)
    upload(bucket, tmp_path / "take", PREFIX)
    body = json.dumps({"pad": "x" * MAX_MARKER_BYTES}).encode()
    s3().put_object(Bucket=bucket, Key=KEYS.marker_key(REF), Body=body)
    emulator.send(QUEUE, r2_event(KEYS.marker_key(REF), len(body), bucket=bucket))
    async with running(cloudflare_settings(emulator, bucket, tmp_path / "work")):
        failed = await until(lambda: final(bucket), 30, "the failure")
        await until(lambda: emulator.backlog(QUEUE) == 0, 10, "the message acknowledged")
    assert failed["state"] == "failed"
    assert failed["error"] == {"kind": "bad_marker", "message": "marker is over 65536 bytes"}


async def test_a_marker_of_the_wrong_type_is_a_take_error_like_any_other(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    emulator.create_queue(QUEUE)
    put_marker(bucket, PREFIX, {"skip_transcription": "false"}, emulator)
    async with running(cloudflare_settings(emulator, bucket, tmp_path / "work")):
        failed = await until(lambda: final(bucket), 30, "the failure")
    assert failed["error"]["kind"] == "bad_marker"
    assert "skip_transcription" in failed["error"]["message"]


async def test_a_store_that_fails_means_a_retry_with_a_delay(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """No such bucket: a passing failure for the service; the message comes back later."""
    emulator.create_queue(QUEUE)
    emulator.send(QUEUE, r2_event(KEYS.marker_key(REF), bucket="no-such-bucket"))
    settings = cloudflare_settings(emulator, "no-such-bucket", tmp_path / "work")
    async with running(settings):
        retried = await until(lambda: emulator.queues[QUEUE].retried, 20, "a retry")
    assert emulator.acked(QUEUE) == []
    assert retried[0][1] >= 1  # RETRY_DELAY_SECONDS, less its jitter, rounded
