"""The meeting's transcript files in a real bucket (moto's S3 server): rebuilt, never stale."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from consumer.errors import BadMarker
from consumer.keys import KeyLayout, TakeRef
from consumer.marker import parse_marker
from consumer.meeting import MeetingTranscript
from consumer.storage.s3 import S3Storage
from tests.pipeline.test_meeting import said

PREFIX = "recordings/m1/1/"
REF = TakeRef("m1", "1", "alice")


def s3_storage(bucket: str) -> S3Storage:
    return SlowWriter(bucket, None)


async def finished(storage: S3Storage, user: str, started_at: Any, *segments: Any) -> None:
    """A participant's take as the job leaves it: chunks, marker, transcript, status done."""
    await storage.put_bytes(f"{PREFIX}{user}/audio_0.webm", b"chunk", "video/webm")
    await storage.put_bytes(
        f"{PREFIX}{user}/done.json", json.dumps({"started_at": started_at}).encode()
    )
    await storage.put_bytes(f"{PREFIX}transcript_{user}.json", json.dumps(said(*segments)).encode())
    await storage.put_bytes(f"{PREFIX}status_{user}.json", json.dumps({"state": "done"}).encode())


async def read(storage: S3Storage, name: str) -> str:
    found = await storage.get_bytes(PREFIX + name)
    assert found is not None
    return found[0].decode()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2026-11-25T10:00:01.500Z", 1795600801.5),
        ("2026-11-25T11:00:01.5+01:00", 1795600801.5),
        (1795600801500, 1795600801.5),
        ("2026-11-25T10:00:01", None),  # no offset: ambiguous
        ("yesterday", None),
        (True, None),
        (-5, None),
    ],
)
def test_started_at_is_rfc3339_or_unix_milliseconds(value: Any, seconds: float | None) -> None:
    """The marker's started_at: a time it can read, else a bad marker saying why."""
    body = json.dumps({"started_at": value}).encode()
    if seconds is None:
        with pytest.raises(BadMarker, match="started_at"):
            parse_marker(body)
    else:
        assert parse_marker(body).started_at == seconds


async def test_a_late_participant_and_a_failed_one_rebuild_the_files(bucket: str) -> None:
    storage = s3_storage(bucket)
    files = MeetingTranscript(storage, KeyLayout())
    await finished(storage, "alice", 1000_000, (0.0, 2.0, "Good morning everyone."))
    await storage.put_bytes(f"{PREFIX}bob/video_0.webm", b"chunk")
    first = await files.rebuild(REF)
    assert first.changed and first.keys["json"] == PREFIX + "transcript.json"
    body = json.loads(await read(storage, "transcript.json"))
    assert body["missing"] == ["bob"] and body["failed"] == []

    await storage.put_bytes(
        f"{PREFIX}status_bob.json",
        json.dumps(
            {"state": "failed", "error": {"kind": "corrupt_media", "message": "bad"}}
        ).encode(),
    )
    await finished(storage, "carol", 1002_000, (1.0, 2.0, "Hello Alice."))
    await files.rebuild(REF)
    body = json.loads(await read(storage, "transcript.json"))
    assert body["failed"] == ["bob"] and body["missing"] == []
    assert body["aligned"] is True
    assert [(s["user_id"], s["start"]) for s in body["segments"]] == [
        ("alice", 0.0),
        ("carol", 3.0),
    ]
    assert "carol: Hello Alice." in await read(storage, "transcript.srt")
    assert "<v carol>Hello Alice." in await read(storage, "transcript.vtt")
    again = await files.rebuild(REF)
    assert not again.changed  # the same bucket gives the same files: nothing written
    head = await storage.list_objects(PREFIX + "transcript.")
    assert sorted(o.name for o in head) == [
        "transcript.json",
        "transcript.srt",
        "transcript.txt",
        "transcript.vtt",
    ]
    await storage.close()


class SlowWriter(S3Storage):
    """A consumer that stalls between building the files and committing them, while
    another participant's take finishes: the interleaving two consumers can hit."""

    def __init__(self, bucket: str, meanwhile: Any) -> None:
        super().__init__(
            bucket,
            endpoint_url=os.environ["WHISP_TEST_S3"],
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
        )
        self.meanwhile = meanwhile

    async def put_bytes(self, key: str, data: bytes, *args: Any, **kwargs: Any) -> str:
        if key.endswith("transcript.json") and self.meanwhile is not None:
            step, self.meanwhile = self.meanwhile, None
            await step()
        return await super().put_bytes(key, data, *args, **kwargs)


async def test_two_takes_finishing_at_once_both_end_up_in_the_files(bucket: str) -> None:
    """Alice's consumer builds without Bob; Bob finishes and commits first; Alice's stale
    commit is refused, she rebuilds, and the files hold both."""
    storage = s3_storage(bucket)
    await finished(storage, "alice", 1000_000, (0.0, 2.0, "Good morning everyone."))
    await storage.put_bytes(f"{PREFIX}bob/audio_0.webm", b"chunk")

    async def bob_finishes() -> None:
        await finished(storage, "bob", 1001_000, (0.5, 1.5, "Morning."))
        await MeetingTranscript(storage, KeyLayout()).rebuild(REF)

    alice = SlowWriter(bucket, bob_finishes)
    result = await MeetingTranscript(alice, KeyLayout()).rebuild(REF)
    # Her stale commit was refused; read again, the files already say what she would.
    assert result.participants == 2 and not result.changed
    body = json.loads(await read(storage, "transcript.json"))
    assert [s["user_id"] for s in body["segments"]] == ["alice", "bob"]
    assert body["missing"] == []
    assert "bob: Morning." in await read(storage, "transcript.srt")
    await asyncio.gather(storage.close(), alice.close())
