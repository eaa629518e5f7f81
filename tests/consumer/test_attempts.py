"""A failed attempt is on the record: the status says what went wrong and when the take
is tried again, and the sweep finds it (a chunk in an archive storage class, moto)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from consumer.errors import StorageError
from consumer.keys import KeyLayout, TakeRef
from consumer.sweep import Sweep
from tests.support.inprocess import take_job
from tests.support.s3 import s3, s3_storage

REF = TakeRef("m", "1", "u")
KEYS = KeyLayout()


def read_status(bucket: str) -> dict[str, Any]:
    body = s3().get_object(Bucket=bucket, Key=KEYS.status_key(REF))["Body"].read()
    return dict(json.loads(body))


async def test_a_chunk_in_glacier_is_a_recorded_attempt_found_by_the_sweep(
    bucket: str, tmp_path: Path
) -> None:
    client: Any = s3()
    chunk = KEYS.take_prefix(REF) + "video_0.webm"
    client.put_object(Bucket=bucket, Key=chunk, Body=b"x" * 100, StorageClass="GLACIER")
    client.put_object(Bucket=bucket, Key=KEYS.marker_key(REF), Body=b"{}")
    storage = s3_storage(bucket)
    job = take_job(storage, "a", tmp_path, retry_delay_seconds=60)
    with pytest.raises(StorageError, match="InvalidObjectState"):
        await job.run(REF)
    record = read_status(bucket)
    assert (record["state"], record["stage"], record["attempts"]) == ("processing", "retrying", 1)
    assert record["last_error"]["kind"] == "storage"
    assert "InvalidObjectState" in record["last_error"]["message"]
    assert record["last_error"]["at"] < record["next_try_at"]  # backoff: 48-60 s later
    assert client.list_objects_v2(Bucket=bucket, Prefix=KEYS.lock_key(REF))["KeyCount"] == 0
    assert await Sweep(storage, KEYS).pending(time.time()) == [REF]
    early = await job.run(REF)  # found again before its time: the backoff holds
    assert early.state == "retry" and 40 < early.delay <= 61
    assert read_status(bucket)["attempts"] == 1
    with pytest.raises(StorageError):
        await take_job(storage, "b", tmp_path).run(REF, force=True)
    again = read_status(bucket)
    assert again["attempts"] == 2 and again["owner"] == "b"
    assert again["last_error"]["kind"] == "storage" and again["stage"] == "retrying"
    job.workers.close()
    await storage.close()
