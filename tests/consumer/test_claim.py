"""The take job's claim and the sweep, against the real S3 server: who claims a take,
what a second delivery is told, and which takes the sweep hands out."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from consumer.keys import KeyLayout, TakeRef
from consumer.sweep import Sweep
from consumer.take import Claim, Outcome
from tests.support.inprocess import take_job
from tests.support.s3 import s3, s3_storage

REF = TakeRef("m", "1", "u")
KEYS = KeyLayout()


def put(bucket: str, key: str, body: bytes | dict[str, Any] = b"x") -> str:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    return str(s3().put_object(Bucket=bucket, Key=key, Body=data)["ETag"].strip('"'))


async def test_a_claimed_take_is_not_claimed_again_and_its_duplicate_is_acknowledged(
    bucket: str, tmp_path: Path
) -> None:
    put(bucket, KEYS.take_prefix(REF) + "video_0.webm")
    put(bucket, KEYS.marker_key(REF), {})
    storage = s3_storage(bucket)
    first = await take_job(storage, "a", tmp_path).claim(REF)
    assert isinstance(first, Claim)
    status = json.loads(s3().get_object(Bucket=bucket, Key=KEYS.status_key(REF))["Body"].read())
    assert (status["state"], status["stage"], status["owner"]) == ("processing", "claimed", "a")
    again = await take_job(storage, "b", tmp_path).claim(REF)
    assert again == Outcome("skipped", "claimed by a")  # acknowledged, not retried
    mine = await take_job(storage, "a", tmp_path).claim(REF)  # the same consumer, another task
    assert isinstance(mine, Outcome) and mine.state == "skipped"
    await first.lease.release()
    await storage.close()


async def test_chunks_are_waited_for_from_the_marker_s_time_without_a_claim(
    bucket: str, tmp_path: Path
) -> None:
    put(bucket, KEYS.take_prefix(REF) + "video_0.webm")
    put(bucket, KEYS.marker_key(REF), {"video_chunks": 2})
    storage = s3_storage(bucket)
    waiting = await take_job(storage, "a", tmp_path, chunk_wait_seconds=60).claim(REF)
    assert isinstance(waiting, Outcome) and waiting.state == "retry"
    assert 5 <= waiting.delay <= 60  # a quarter of what is left, at least 5 s
    assert s3().list_objects_v2(Bucket=bucket, Prefix=KEYS.lock_key(REF))["KeyCount"] == 0
    late = await take_job(storage, "a", tmp_path, chunk_wait_seconds=0).claim(REF)
    assert isinstance(late, Claim)  # the wait is over: claimed, to fail as missing chunks
    await late.lease.release()
    await storage.close()


async def test_the_sweep_hands_out_what_nobody_finished(bucket: str, tmp_path: Path) -> None:
    refs = {name: TakeRef("m", "1", name) for name in ("new", "done", "again", "live", "dead")}
    etags = {name: put(bucket, KEYS.marker_key(ref), {"n": name}) for name, ref in refs.items()}

    def status(name: str, state: str, marker_etag: str) -> None:
        put(
            bucket,
            KEYS.status_key(refs[name]),
            {"state": state, "stage": "x", "fingerprint": {"marker_etag": marker_etag}},
        )

    status("done", "done", etags["done"])
    status("again", "done", etags["again"])
    status("live", "processing", etags["live"])
    status("dead", "processing", etags["dead"])
    put(bucket, KEYS.lock_key(refs["live"]), {"owner": "x", "expires": time.time() + 60})
    put(bucket, KEYS.lock_key(refs["dead"]), {"owner": "x", "expires": time.time() - 1})
    put(bucket, KEYS.marker_key(refs["again"]), {"n": "again", "v": 2})
    sweep = Sweep(s3_storage(bucket), KEYS)
    found = await sweep.pending(time.time())
    assert sorted(r.user_id for r in found) == ["again", "dead", "new"]
    put(bucket, KEYS.lock_key(refs["dead"]), b"")  # unreadable: as good as stale
    assert [r.user_id for r in await sweep.pending(time.time())].count("dead") == 1
    await sweep.storage.close()


@pytest.mark.parametrize("state", ["done", "failed"])
async def test_a_final_take_costs_the_sweep_one_listing(
    bucket: str, tmp_path: Path, state: str
) -> None:
    etag = put(bucket, KEYS.marker_key(REF), {})
    put(bucket, KEYS.status_key(REF), {"state": state, "fingerprint": {"marker_etag": etag}})
    sweep = Sweep(s3_storage(bucket), KEYS)
    assert await sweep.pending(time.time()) == []
    s3().delete_object(Bucket=bucket, Key=KEYS.status_key(REF))
    assert await sweep.pending(time.time()) == []  # remembered: not read again
    await sweep.storage.close()
