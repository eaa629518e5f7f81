"""What an adversarial run found (issue 11), each with a test that fails without its fix:
a background loop that dies of its first error, nested keys taken for chunks, work folders
of interrupted attempts left behind, a token printed by ``whisp doctor``, a status record
that grows without bound; and proof of what was fixed before (a chunk that never comes
ends ``failed`` whatever the queue's retry limit; an event of another bucket is ignored)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

from consumer import workdirs
from consumer.backends import make_source
from consumer.cli.doctor import doctor
from consumer.keys import KeyLayout, TakeRef
from consumer.lease import Lease
from consumer.service import Service
from consumer.status import MAX_LISTED_CHUNKS, StatusRecord, fingerprint, look
from consumer.storage import ObjectInfo, get_json
from consumer.storage.local import LocalStorage
from consumer.storage.s3 import S3Storage
from tests.support.cfqueue import TOKEN, QueueEmulator, r2_event
from tests.support.harness import QUEUE, put_marker, status, upload
from tests.support.inprocess import cloudflare_settings, take_job, until
from tests.support.s3 import s3, s3_storage, store_options
from tests.support.takes import make_take

REF = TakeRef("meet-h", "1", "u1")
KEYS = KeyLayout()
PREFIX = KEYS.take_prefix(REF)


def final(bucket: str) -> dict[str, Any] | None:
    found = status(bucket, KEYS.status_key(REF))
    return found if found and found.get("state") in ("done", "failed") else None


class SweepBug(S3Storage):
    """The bucket, except that listing the whole layout (the sweep's call) raises an
    error that is not a storage error the first ``times`` times: a bug, say."""

    def __init__(self, bucket: str, times: int) -> None:
        super().__init__(bucket, **store_options())
        self.times = times

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        if prefix == KEYS.root and self.times > 0:
            self.times -= 1
            raise RuntimeError("a bug in the sweep")
        return await super().list_objects(prefix)


async def test_the_sweep_survives_any_error_and_shutdown_stays_clean(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """Item 2: the sweep's first two rounds raise a RuntimeError. The third finds the take
    (its notification was lost) and makes it; stopping the service raises nothing."""
    emulator.create_queue(QUEUE)
    make_take(tmp_path / "take", duration=1.0, chunks=1)
    upload(bucket, tmp_path / "take", PREFIX)
    put_marker(bucket, PREFIX, {"skip_transcription": True}, None)  # no notification
    settings = cloudflare_settings(emulator, bucket, tmp_path / "work", sweep_interval_seconds=0.3)
    storage = SweepBug(bucket, times=2)
    service = Service(settings, storage, make_source(settings))
    with structlog.testing.capture_logs() as logged:
        task = asyncio.create_task(service.run())
        done = await until(lambda: final(bucket), 60, "the take, found by the sweep")
        service.stop()
        await asyncio.wait_for(task, 60)  # raises if the stored error comes back out
    assert done["state"] == "done", done.get("error")
    assert storage.times == 0
    failed = [e for e in logged if e["event"] == "background loop failed; it goes on"]
    assert len(failed) == 2 and failed[0]["loop"] == "sweep"
    assert any(e["event"] == "whisp stopped" for e in logged)


async def test_nested_keys_are_never_chunks(tmp_path: Path) -> None:
    """Item 6: only the take prefix's direct children are chunks."""
    storage = LocalStorage(tmp_path / "bucket")
    await storage.put_bytes(PREFIX + "video_0.webm", b"real", "video/webm")
    await storage.put_bytes(PREFIX + "zzz/video_0.webm", b"an impostor", "video/webm")
    await storage.put_bytes(PREFIX + "a/b/audio_0.webm", b"another", "video/webm")
    await storage.put_bytes(KEYS.marker_key(REF), b"{}")
    seen = await look(storage, KEYS, REF)
    assert seen is not None
    assert [c.key for c in seen.chunks] == [PREFIX + "video_0.webm"]
    assert [c["name"] for c in seen.fingerprint["chunks"]] == ["video_0.webm"]


async def test_a_nested_chunk_does_not_replace_the_real_one(bucket: str, tmp_path: Path) -> None:
    """Item 6, through the take job: a junk ``zzz/video_0.webm`` listed after the real one
    would have been downloaded over it; the take is made from the real chunk."""
    make_take(tmp_path / "take", duration=1.0, chunks=1, audio=None)
    upload(bucket, tmp_path / "take", PREFIX)
    s3().put_object(Bucket=bucket, Key=PREFIX + "zzz/video_0.webm", Body=b"not media at all")
    s3().put_object(Bucket=bucket, Key=KEYS.marker_key(REF), Body=b'{"skip_transcription": true}')
    storage = s3_storage(bucket)
    outcome = await take_job(storage, "a", tmp_path).run(REF)
    await storage.close()
    assert outcome.state == "done", outcome.reason
    record = final(bucket)
    assert record is not None and record["fingerprint"]["chunks"][0]["size"] > 100


async def test_a_status_record_never_outgrows_what_its_readers_accept(tmp_path: Path) -> None:
    """A take with 200 000 chunks, a 10 MB error and 100 000 warnings: the record stays
    readable (under ``get_json``'s 1 MiB), and the fingerprint still tells inputs apart."""
    storage = LocalStorage(tmp_path / "bucket")
    lease = Lease(storage, KEYS.lock_key(REF), "a", 30)
    await lease.acquire()
    marker = ObjectInfo(KEYS.marker_key(REF), 2, "m" * 32)
    chunks = [ObjectInfo(f"{PREFIX}video_{i}.webm", 9, f"{i:032x}") for i in range(200_000)]
    printed = fingerprint(chunks, marker)
    assert printed["chunk_count"] == 200_000 and len(printed["chunks"]) == MAX_LISTED_CHUNKS
    assert printed["hash"] != fingerprint(chunks[:-1], marker)["hash"]
    record = StatusRecord(
        storage, KEYS.status_key(REF), lease, REF, fingerprint=printed, previous={}, engine="x"
    )
    record.record["error"] = {"kind": "missing_chunks", "message": "video 1, " * 1_000_000}
    record.record["warnings"] = [f"chunk {i} held no frames " * 50 for i in range(100_000)]
    record.record["webhook"] = {"delivered": False, "error": "e" * 100_000}
    await record.write("failed", "failed")
    found = await storage.get_bytes(KEYS.status_key(REF))
    assert found is not None
    assert len(found[0]) < 256 * 1024
    read = await get_json(storage, KEYS.status_key(REF))
    assert read is not None and read["error"]["message"].endswith("more characters)")
    assert read["warnings"][-1] == "... and 99950 more warnings"
    await lease.release()


@pytest.mark.parametrize("late", [False, True], ids=["while-running", "started-late"])
async def test_a_chunk_that_never_comes_fails_the_take_within_three_deliveries(
    emulator: QueueEmulator, bucket: str, tmp_path: Path, late: bool
) -> None:
    """Item 3: Cloudflare's default max_retries is 3. The wait is measured from the
    marker's time: started after the deadline, the first delivery fails the take."""
    emulator.create_queue(QUEUE, max_retries=3, dead_letter="dlq")
    make_take(tmp_path / "take", duration=1.0, chunks=1)
    upload(bucket, tmp_path / "take", PREFIX)
    put_marker(bucket, PREFIX, {"video_chunks": 3, "skip_transcription": True}, emulator)
    wait = 2.0
    if late:
        await asyncio.sleep(wait + 0.5)
    settings = cloudflare_settings(
        emulator, bucket, tmp_path / "work", chunk_wait_seconds=wait, sweep_interval_seconds=0
    )
    service = Service(settings, s3_storage(bucket), make_source(settings))
    task = asyncio.create_task(service.run())
    try:
        failed = await until(lambda: final(bucket), 40, "the take's failure")
        await until(lambda: emulator.backlog(QUEUE) == 0, 20, "the marker acknowledged")
    finally:
        service.stop()
        await asyncio.wait_for(task, 60)
    assert failed["state"] == "failed" and failed["error"]["kind"] == "missing_chunks"
    assert "video 1" in failed["error"]["message"] and "2" in failed["error"]["message"]
    assert emulator.backlog("dlq") == 0
    retried = emulator.queues[QUEUE].retried
    assert len(retried) <= (0 if late else 2), retried


async def test_an_event_of_another_bucket_is_ignored(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """Item 9: the same key in another bucket's event starts nothing in ours."""
    emulator.create_queue(QUEUE)
    make_take(tmp_path / "take", duration=1.0, chunks=1)
    upload(bucket, tmp_path / "take", PREFIX)
    s3().put_object(Bucket=bucket, Key=KEYS.marker_key(REF), Body=b"{}")
    emulator.send(QUEUE, r2_event(KEYS.marker_key(REF), bucket="someone-elses"))
    settings = cloudflare_settings(emulator, bucket, tmp_path / "work", sweep_interval_seconds=0)
    service = Service(settings, s3_storage(bucket), make_source(settings))
    with structlog.testing.capture_logs() as logged:
        task = asyncio.create_task(service.run())
        await until(lambda: emulator.backlog(QUEUE) == 0, 20, "the event acknowledged")
        await asyncio.sleep(0.5)
        service.stop()
        await asyncio.wait_for(task, 60)
    assert status(bucket, KEYS.status_key(REF)) is None
    assert len(emulator.acked(QUEUE)) == 1 and service.takes_handled == 0
    assert any(e["event"] == "event of another bucket ignored" for e in logged)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_work_folders_go_and_running_ones_stay(tmp_path: Path) -> None:
    """Item 7: a folder of a dead process of this host, of this pid before this process
    started, or untouched for a day goes; this consumer's, a live process's, and
    anything not named like a work folder stay."""
    host = socket.gethostname()
    me = f"{host}-{os.getpid()}-aaaaaa"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead": f"{host}-{dead_pid()}-bbbbbb-0000000a",
            "reused": f"{host}-{os.getpid()}-cccccc-0000000b",
            "old": "elsewhere-7-dddddd-0000000c",
            "mine": f"{me}-0000000d",
            "live": f"{host}-{sleeper.pid}-eeeeee-0000000e",
            "other-host": "elsewhere-8-ffffff-0000000f",
            "not-ours": "keep-me",
        }
        for name in names.values():
            (tmp_path / name / "chunks").mkdir(parents=True)
            (tmp_path / name / "chunks" / "video_0.webm").write_bytes(b"x" * 1000)
        day_ago = time.time() - workdirs.STALE_AFTER - 60
        for key in ("reused", "old"):
            for path in [tmp_path / names[key], *(tmp_path / names[key]).rglob("*")]:
                os.utime(path, (day_ago, day_ago))
        removed = workdirs.remove_stale(tmp_path, me)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(removed) == sorted(names[k] for k in ("dead", "reused", "old"))
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {names[k] for k in ("mine", "live", "other-host", "not-ours")}
    assert workdirs.remove_stale(tmp_path / "absent", me) == []


def test_work_folder_names_parse_back_to_their_owner() -> None:
    owner = workdirs.owner_name()
    folder = workdirs.new_folder(Path("/w"), owner)
    found = workdirs.NAME.match(folder.name)
    assert found is not None and found["owner"] == owner and int(found["pid"]) == os.getpid()


async def test_doctor_masks_a_token_an_api_error_echoes(
    emulator: QueueEmulator, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 8: the queue API answers an error that holds the token it was sent (as it is
    and URL-encoded); ``whisp doctor`` prints neither."""
    emulator.create_queue(QUEUE)
    echo = f"bad token {TOKEN!r} (Bearer%20{TOKEN}) for {json.dumps({'t': TOKEN})}"
    emulator.inject("consumers", 400, 10001, message=echo)
    code = await doctor(cloudflare_settings(emulator, bucket, tmp_path))
    out = capsys.readouterr().out
    queue_line = next(line for line in out.splitlines() if " queue:" in line)
    assert code == 1 and queue_line.startswith("FAIL") and "bad token" in queue_line
    assert TOKEN not in out and "***" in queue_line
