"""The meeting's transcript, end to end: takes of real speech by several participants,
finished by two consumers at once, merged into one timeline in the bucket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web

from consumer.keys import KeyLayout, TakeRef
from pipeline import meeting
from pipeline.meeting import Participant
from tests.support.cfqueue import QueueEmulator
from tests.support.harness import QUEUE, put_marker, status, upload
from tests.support.inprocess import cloudflare_settings, running, until
from tests.support.paths import ROOT
from tests.support.s3 import s3

KEYS = KeyLayout()
SCHEMA = json.loads((ROOT / "docs" / "meeting-transcript.schema.json").read_text())
START = 1_795_600_000_000  # Unix milliseconds: when alice's recorder started


def ref(user: str) -> TakeRef:
    return TakeRef("standup", "1", user)


def read(bucket: str, key: str) -> str:
    return str(s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode())


def files(bucket: str) -> dict[str, str]:
    return {kind: read(bucket, key) for kind, key in KEYS.meeting_keys(ref("alice")).items()}


def state(bucket: str, user: str) -> str | None:
    found = status(bucket, KEYS.status_key(ref(user)))
    return found.get("state") if found else None


@pytest.fixture
async def notices() -> AsyncIterator[list[dict[str, Any]]]:
    """A webhook receiver on 127.0.0.1: the notices whisp sends, in order."""
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    received.append({"url": f"http://127.0.0.1:{port}/hook"})
    yield received
    await runner.cleanup()


async def test_participants_finishing_at_once_make_one_timeline(
    emulator: QueueEmulator,
    bucket: str,
    fixture_take: Path,
    tmp_path: Path,
    notices: list[dict[str, Any]],
) -> None:
    """Three takes of real speech, their recorders started 0, 2.5 and 4 s apart, run by two
    consumers at once; then a late fourth and a broken fifth. The files always hold every
    finished participant, aligned on started_at, and list the failed one."""
    emulator.create_queue(QUEUE)
    audio = sorted(p.name for p in fixture_take.glob("audio_*.webm"))
    everything = sorted(p.name for p in fixture_take.glob("*.webm"))
    takes = {"alice": (everything, 0), "bob": (audio, 2500), "carol": (audio[:4], 4000)}
    for user, (names, _) in takes.items():
        upload(bucket, fixture_take, KEYS.take_prefix(ref(user)), names)
    url = notices.pop(0)["url"]
    settings = cloudflare_settings(
        emulator,
        bucket,
        tmp_path / "work",
        language="en",
        webhook_url=url,
        webhook_secret="meeting-secret",
    )
    async with running(settings), running(settings):
        for user, (_, offset) in takes.items():
            marker = {"started_at": START + offset, "language": "en"}
            put_marker(bucket, KEYS.take_prefix(ref(user)), marker, emulator)
        await until(lambda: all(state(bucket, u) == "done" for u in takes), 240, "the three takes")
        await until(lambda: emulator.backlog(QUEUE) == 0, 30, "the markers settled")

        def rebuilt(count: int) -> dict[str, str] | None:
            """The files once they include ``count`` participants' words: each take's
            rebuild follows its own final status."""
            found = files(bucket)
            body = json.loads(found["json"])
            included = sum(p["included"] for p in body["participants"])
            return found if included == count and not body["missing"] else None

        first = await until(lambda: rebuilt(3), 30, "the files with all three")
        body = json.loads(first["json"])
        jsonschema.validate(body, SCHEMA)
        assert body["aligned"] is True
        assert [p["user_id"] for p in body["participants"]] == ["alice", "bob", "carol"]
        assert [p["offset"] for p in body["participants"]] == [0.0, 2.5, 4.0]
        assert body["missing"] == [] and body["failed"] == []
        # Each speaker's words, moved by their recorder's start, in one order by time.
        starts = [s["start"] for s in body["segments"]]
        assert starts == sorted(starts)
        for user in takes:
            assert any(s["user_id"] == user for s in body["segments"]), user
        first_words = {
            user: min(s["start"] for s in body["segments"] if s["user_id"] == user)
            for user in takes
        }
        assert first_words["bob"] - first_words["alice"] == pytest.approx(2.5, abs=0.6)
        assert first_words["carol"] - first_words["alice"] == pytest.approx(4.0, abs=0.6)
        # The files are exactly the merge of the participants' own transcripts, whichever
        # take finished last and on whichever consumer.
        own = {
            u: json.loads(read(bucket, KEYS.output_keys(ref(u), "none")["transcript"]))
            for u in takes
        }
        expected = meeting.merge(
            "standup",
            "1",
            [Participant(u, "done", (START + takes[u][1]) / 1000, own[u]) for u in takes],
        )
        assert first["json"] == meeting.to_json(expected)
        assert first["srt"] == meeting.to_srt(expected)
        assert "<v bob>" in first["vtt"] and first["txt"].startswith("alice: Good morning")

        # A late participant, and one whose take fails: both rebuild the files.
        upload(bucket, fixture_take, KEYS.take_prefix(ref("dave")), audio[:3])
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "audio_0.webm").write_bytes(b"not media at all" * 40)
        upload(bucket, tmp_path / "bad", KEYS.take_prefix(ref("erin")))
        put_marker(bucket, KEYS.take_prefix(ref("dave")), {"started_at": START + 9000}, emulator)
        put_marker(bucket, KEYS.take_prefix(ref("erin")), {}, emulator)
        await until(
            lambda: state(bucket, "dave") == "done" and state(bucket, "erin") == "failed",
            120,
            "the late takes",
        )

        async def merged_everyone() -> dict[str, Any] | None:
            found = json.loads(files(bucket)["json"])
            ready = len(found["participants"]) == 5 and not found["missing"]
            return found if ready and found["failed"] else None

        late: dict[str, Any] = await until(merged_everyone, 30, "the files rebuilt")
    jsonschema.validate(late, SCHEMA)
    assert late["failed"] == ["erin"] and late["missing"] == []
    assert late["aligned"] is True  # erin has no words: only those with words must align
    assert [p["included"] for p in late["participants"]] == [True, True, True, True, False]
    assert any(s["user_id"] == "dave" and s["start"] >= 9.0 for s in late["segments"])
    await asyncio.sleep(0.5)  # the last notice may still be on its way
    kinds = [n["status"] for n in notices]
    assert kinds.count("completed") == 4 and kinds.count("failed") == 1
    meeting_notices = [n for n in notices if n["status"] == "meeting_transcript"]
    assert meeting_notices, kinds
    assert meeting_notices[-1]["outputs"] == KEYS.meeting_keys(ref("alice"))
