"""A take followed while it is recorded, through ``whisp run`` as a subprocess: what a
consumer killed while following leaves behind (nothing that stops the take)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from consumer.keys import KeyLayout, TakeRef
from pipeline.chunks import parse_chunk_name
from tests.support.cfqueue import QueueEmulator
from tests.support.harness import QUEUE, env_for, put_marker, status, upload, wait_for, whisp
from tests.support.s3 import s3

pytestmark = pytest.mark.slow
KEYS = KeyLayout()


def in_upload_order(folder: Path) -> list[str]:
    chunks = {p.name: parse_chunk_name(p.name) for p in folder.iterdir()}
    return sorted((n for n, c in chunks.items() if c), key=lambda n: (chunks[n] or ("", 0))[::-1])


def keys_of(bucket: str, prefix: str) -> list[str]:
    listed: Any = s3().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_a_follower_killed_mid_take_leaves_it_to_be_made_whole(
    emulator: QueueEmulator, bucket: str, tmp_path: Path, fixture_take: Path
) -> None:
    """Consumer a follows the take and is SIGKILLed halfway through the recording; the
    marker goes to consumer b, which leaves the take to a while a's follow lease is live,
    then makes it whole: done once, by b, the stale follow lease and a's claim gone."""
    emulator.create_queue(QUEUE, max_retries=10)
    ref = TakeRef("follow", "1", "killed")
    prefix = KEYS.take_prefix(ref)
    names = in_upload_order(fixture_take)
    common: dict[str, object] = {"LEASE_SECONDS": 4, "FOLLOW_POLL_SECONDS": 0.3}
    env_a = env_for(emulator, bucket, tmp_path / "wa", **common)
    env_b = env_for(emulator, bucket, tmp_path / "wb", FOLLOW_TAKES=0, **common)
    with whisp(env_a, tmp_path / "a.log") as a, whisp(env_b, tmp_path / "b.log") as b:
        wait_for(lambda: a.events("whisp started"), 60, "a up")
        for name in names[:8]:
            upload(bucket, fixture_take, prefix, [name], emulator)
            time.sleep(0.2)
        wait_for(lambda: a.events("stage started"), 60, "a's worker reading the take")
        wait_for(lambda: b.events("whisp started"), 60, "b up")
        assert KEYS.follow_key(ref) in keys_of(bucket, prefix)
        a.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        for name in names[8:]:
            upload(bucket, fixture_take, prefix, [name], emulator)
        put_marker(bucket, prefix, {"language": "en"}, emulator)
        done = wait_for(
            lambda: (
                (found := status(bucket, KEYS.status_key(ref)))
                and found.get("state") == "done"
                and found
            ),
            90,
            "b makes the take",
        )
        assert b.stop() == 0
    assert time.monotonic() - killed_at >= 3  # not before a's follow lease ran out
    assert b.events("take followed by another consumer; left to it")
    assert done["owner"] == b.owner and done["followed"] is False and done["attempts"] == 1
    assert len(b.events("take done")) == 1 and done["cues"] > 0
    # The chunks and the marker, nothing else: a's follow lease and the take's lease are gone.
    assert keys_of(bucket, prefix) == sorted(prefix + n for n in [*names, "done.json"])
