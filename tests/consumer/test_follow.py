"""Takes followed while they are recorded (``consumer.follow``), in the test's own loop,
against the real S3 server and the queue emulator: chunks land at a browser's pace, with
their notifications, then the marker.

Each test compares with the take made whole (the same chunks under another user, with
following off) where the outputs matter: a followed take is the same take."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from consumer.keys import KeyLayout, TakeRef
from pipeline.chunks import parse_chunk_name
from tests.support.cfqueue import QueueEmulator, r2_event
from tests.support.harness import QUEUE, put_marker, status, upload
from tests.support.inprocess import cloudflare_settings, running, until
from tests.support.s3 import s3
from tests.support.takes import make_take

KEYS = KeyLayout()
FAST = {"follow_poll_seconds": 0.2, "sweep_interval_seconds": 0}


def final(bucket: str, ref: TakeRef) -> dict[str, Any] | None:
    found = status(bucket, KEYS.status_key(ref))
    return found if found and found.get("state") in ("done", "failed") else None


def output(bucket: str, record: dict[str, Any], role: str) -> bytes:
    body: bytes = s3().get_object(Bucket=bucket, Key=record["outputs"][role]["key"])["Body"].read()
    return body


def upload_order(folder: Path) -> list[str]:
    """Chunk names as a browser uploads them: every kind's n-th chunk together."""
    chunks = {p.name: parse_chunk_name(p.name) for p in folder.iterdir()}
    return sorted((n for n, c in chunks.items() if c), key=lambda n: (chunks[n] or ("", 0))[::-1])


async def record(
    bucket: str,
    emulator: QueueEmulator,
    folder: Path,
    ref: TakeRef,
    pace: float,
    names: list[str] | None = None,
) -> None:
    """Upload the take's chunks one by one, ``pace`` seconds apart, with their events."""
    for name in names or upload_order(folder):
        await asyncio.to_thread(upload, bucket, folder, KEYS.take_prefix(ref), [name], emulator)
        await asyncio.sleep(pace)


async def test_a_followed_take_is_the_take_made_whole(
    emulator: QueueEmulator, bucket: str, tmp_path: Path, fixture_take: Path
) -> None:
    """The real Chromium take, uploaded at pace: made while it is recorded (``followed``),
    the same MP4 and captions as the same chunks made whole, and done soon after its
    marker."""
    emulator.create_queue(QUEUE)
    followed, whole = TakeRef("m", "1", "followed"), TakeRef("m", "1", "whole")
    settings = cloudflare_settings(emulator, bucket, tmp_path / "work", language="en", **FAST)
    async with running(settings) as service:
        await record(bucket, emulator, fixture_take, followed, pace=0.3)
        await until(lambda: followed in service.followers, 10, "the take followed")
        put_marker(bucket, KEYS.take_prefix(followed), {}, emulator)
        made = await until(lambda: final(bucket, followed), 90, "the followed take")
    unfollowed = cloudflare_settings(
        emulator, bucket, tmp_path / "work2", language="en", follow_takes=False, **FAST
    )
    async with running(unfollowed):
        upload(bucket, fixture_take, KEYS.take_prefix(whole))
        put_marker(bucket, KEYS.take_prefix(whole), {}, emulator)
        reference = await until(lambda: final(bucket, whole), 90, "the take made whole")
    assert made["state"] == reference["state"] == "done", made.get("error")
    assert made["followed"] is True and reference["followed"] is False
    assert made["timings"]["following"] > 1.0
    for role in ("video", "audio", "srt", "vtt"):
        assert output(bucket, made, role) == output(bucket, reference, role), role
    assert made["captions"] == reference["captions"] and made["cues"] > 0
    listed = s3().list_objects_v2(Bucket=bucket, Prefix=KEYS.take_prefix(followed))
    assert not [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith(".follow")]
    assert not list((tmp_path / "work").iterdir())  # the follower's folder is gone


async def test_a_chunk_uploaded_again_while_followed_is_caught(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """A restarted recording's chunk replaced by another while the take is followed: the
    follower gives the take up and the marker makes it whole from the new chunk."""
    emulator.create_queue(QUEUE)
    ref = TakeRef("m", "2", "u")
    first = make_take(tmp_path / "a", duration=4.0, chunks=4, layout="restarted")
    again = make_take(tmp_path / "b", duration=4.0, chunks=4, layout="restarted", seed=7)
    settings = cloudflare_settings(emulator, bucket, tmp_path / "work", **FAST)
    async with running(settings) as service:
        await record(bucket, emulator, first.folder, ref, pace=0.3)
        follower = await until(lambda: service.followers.get(ref), 10, "the follower")
        await until(lambda: len(follower.known) == 8, 20, "every chunk downloaded")
        shutil.copyfile(again.folder / "video_1.webm", tmp_path / "video_1.webm")
        await record(bucket, emulator, tmp_path, ref, pace=0.1, names=["video_1.webm"])
        await until(lambda: ref not in service.followers, 20, "the take given up")
        put_marker(bucket, KEYS.take_prefix(ref), {"skip_transcription": True}, emulator)
        made = await until(lambda: final(bucket, ref), 60, "the take")
    assert made["state"] == "done" and made["followed"] is False
    new_etag = s3().head_object(Bucket=bucket, Key=KEYS.take_prefix(ref) + "video_1.webm")["ETag"]
    listed = {c["name"]: c["etag"] for c in made["fingerprint"]["chunks"]}
    assert listed["video_1.webm"] == new_etag.strip('"')


async def test_an_abandoned_take_is_let_go(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """No chunk and no marker for CHUNK_WAIT_SECONDS: the follow lease and the folder go."""
    emulator.create_queue(QUEUE)
    ref = TakeRef("m", "3", "u")
    spec = make_take(tmp_path / "take", duration=3.0, chunks=3)
    settings = cloudflare_settings(
        emulator, bucket, tmp_path / "work", chunk_wait_seconds=3, **FAST
    )
    async with running(settings) as service:
        await record(bucket, emulator, spec.folder, ref, pace=0.1)
        await until(lambda: ref in service.followers, 10, "the take followed")
        assert s3().head_object(Bucket=bucket, Key=KEYS.follow_key(ref))
        await until(lambda: ref not in service.followers, 20, "the take let go")
        await until(lambda: not list((tmp_path / "work").iterdir()), 10, "its folder removed")
        listed = s3().list_objects_v2(Bucket=bucket, Prefix=KEYS.follow_key(ref))
        assert listed["KeyCount"] == 0
        assert service.free == 1
    assert status(bucket, KEYS.status_key(ref)) is None  # nothing claimed, nothing written


async def test_a_follower_never_keeps_a_finished_take_waiting(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """One worker, held by a take being recorded: a take that has ended gets it, at once."""
    emulator.create_queue(QUEUE)
    recording, ended = TakeRef("m", "4", "rec"), TakeRef("m", "4", "ended")
    long_take = make_take(tmp_path / "long", duration=6.0, chunks=6)
    short = make_take(tmp_path / "short", duration=2.0, chunks=2)
    settings = cloudflare_settings(emulator, bucket, tmp_path / "work", concurrency=1, **FAST)
    async with running(settings) as service:
        names = upload_order(long_take.folder)
        await record(bucket, emulator, long_take.folder, recording, 0.1, names[:6])
        await until(lambda: recording in service.followers, 10, "the take followed")
        upload(bucket, short.folder, KEYS.take_prefix(ended))
        put_marker(bucket, KEYS.take_prefix(ended), {"skip_transcription": True}, emulator)
        done = await until(lambda: final(bucket, ended), 60, "the ended take")
        assert recording not in service.followers  # given up for it
        await record(bucket, emulator, long_take.folder, recording, 0.05, names[6:])
        put_marker(bucket, KEYS.take_prefix(recording), {"skip_transcription": True}, emulator)
        later = await until(lambda: final(bucket, recording), 60, "the recorded take")
    assert done["state"] == later["state"] == "done"


async def test_a_marker_heard_by_another_consumer_is_left_to_the_follower(
    emulator: QueueEmulator, bucket: str, tmp_path: Path, fixture_take: Path
) -> None:
    """Two consumers: the one that does not follow the take (it reads another queue, where
    only the marker's notification goes) leaves the marker to the one that does, which
    makes the take, once."""
    other = "d" * 32
    emulator.create_queue(QUEUE)
    emulator.create_queue(other)
    ref = TakeRef("m", "5", "u")
    a = cloudflare_settings(emulator, bucket, tmp_path / "wa", **FAST)
    b = cloudflare_settings(
        emulator, bucket, tmp_path / "wb", cf_queue_id=other, follow_takes=False, **FAST
    )
    async with running(a) as first, running(b) as second:
        await record(bucket, emulator, fixture_take, ref, pace=0.1)
        await until(lambda: ref in first.followers, 10, "a follows the take")
        marker = KEYS.marker_key(ref)
        put = s3().put_object(Bucket=bucket, Key=marker, Body=b'{"skip_transcription": true}')
        emulator.send(other, r2_event(marker, 28, put["ETag"].strip('"'), bucket=bucket))
        made = await until(lambda: final(bucket, ref), 60, "the take")
        await until(lambda: emulator.backlog(other) == 0, 30, "b settled the marker")
        assert second.takes_handled == 0
    assert made["state"] == "done" and made["followed"] is True
    assert made["owner"] == first.owner and made["attempts"] == 1


async def test_the_sweep_follows_a_take_whose_chunk_events_were_lost(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """Chunks with no notification (a bucket with the marker rule only): the sweep finds a
    take with chunks and no marker, recorded a moment ago, and follows it; a take whose
    last chunk is older than CHUNK_WAIT_SECONDS is abandoned, not followed."""
    emulator.create_queue(QUEUE)
    ref, old = TakeRef("m", "6", "u"), TakeRef("m", "6", "gone")
    spec = make_take(tmp_path / "take", duration=3.0, chunks=3)
    upload(bucket, spec.folder, KEYS.take_prefix(old))
    await asyncio.sleep(3.5)
    upload(bucket, spec.folder, KEYS.take_prefix(ref))
    settings = cloudflare_settings(
        emulator,
        bucket,
        tmp_path / "work",
        concurrency=2,
        chunk_wait_seconds=3,
        follow_poll_seconds=0.2,
        sweep_interval_seconds=0.5,
    )
    async with running(settings) as service:
        follower = await until(lambda: service.followers.get(ref), 10, "the take followed")
        assert old not in service.followers
        progress = follower.folder / "progress.json"
        await until(progress.exists, 20, "its first pass reading the chunks")
        put_marker(bucket, KEYS.take_prefix(ref), {"skip_transcription": True}, emulator)
        made = await until(lambda: final(bucket, ref), 60, "the take")
    assert made["state"] == "done" and made["followed"] is True
