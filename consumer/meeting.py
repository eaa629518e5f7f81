"""The meeting's transcript files, rebuilt in the bucket when a participant's take is done.

``recordings/{meeting}/{take}/transcript.{json,srt,vtt,txt}`` hold every participant's
words in one timeline (``pipeline.meeting`` does the merging). They are rebuilt from what
the bucket holds, so a late participant, a re-run or a failed take only changes what they
say, never loses anyone.

Two participants can finish at once on two consumers. The JSON file is the commit point:
it is written last, conditionally on the version read before building (``If-Match``, or
``If-None-Match: *`` when absent). A writer whose condition fails read a stale view: it
reads again and rebuilds, so the last writer to succeed has seen every finished take.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import structlog

from consumer.errors import PreconditionFailed
from consumer.keys import KeyLayout, valid_id
from consumer.storage import Storage, get_json
from pipeline import meeting
from pipeline.meeting import Participant

log = structlog.get_logger(__name__)

FILES = {
    "json": ("transcript.json", "application/json"),
    "srt": ("transcript.srt", "application/x-subrip"),
    "vtt": ("transcript.vtt", "text/vtt; charset=utf-8"),
    "txt": ("transcript.txt", "text/plain; charset=utf-8"),
}
ATTEMPTS = 5


def parse_started_at(value: Any) -> float | None:
    """A recorder's start as Unix seconds: RFC 3339 text or Unix milliseconds."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) / 1000.0
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            return None
        return when.timestamp()
    return None


@dataclass(frozen=True)
class MeetingFiles:
    """What a rebuild wrote (keys by kind), or nothing when the files were already so."""

    keys: dict[str, str]
    changed: bool
    participants: int


class MeetingTranscript:
    def __init__(self, storage: Storage, layout: KeyLayout) -> None:
        self.storage = storage
        self.layout = layout

    def _prefix(self, meeting_id: str, take: str) -> str:
        return f"{self.layout.recordings.strip('/')}/{meeting_id}/{take}/"

    async def rebuild(self, meeting_id: str, take: str) -> MeetingFiles:
        """Rebuild the take's meeting files from every participant the bucket holds."""
        prefix = self._prefix(meeting_id, take)
        keys = {kind: prefix + name for kind, (name, _) in FILES.items()}
        for _ in range(ATTEMPTS):
            current = await self.storage.get_bytes(keys["json"], max_bytes=64 << 20)
            participants = await self._participants(prefix)
            merged = meeting.merge(meeting_id, take, participants)
            body = meeting.to_json(merged)
            if current is not None and current[0].decode(errors="replace") == body:
                return MeetingFiles(keys, False, len(participants))
            texts = {
                "srt": meeting.to_srt(merged),
                "vtt": meeting.to_vtt(merged),
                "txt": meeting.to_text(merged),
            }
            for kind, text in texts.items():
                await self.storage.put_bytes(keys[kind], text.encode(), FILES[kind][1])
            try:
                await self.storage.put_bytes(
                    keys["json"],
                    body.encode(),
                    FILES["json"][1],
                    if_none_match=current is None,
                    if_match=current[1] if current is not None else None,
                )
            except PreconditionFailed:
                log.info("meeting transcript changed meanwhile; rebuilding")
                continue
            log.info("meeting transcript written", participants=len(participants))
            return MeetingFiles(keys, True, len(participants))
        raise PreconditionFailed(f"{keys['json']}: changed {ATTEMPTS} times while rebuilding")

    async def _participants(self, prefix: str) -> list[Participant]:
        objects = await self.storage.list_objects(prefix)
        users: set[str] = set()
        statuses: set[str] = set()
        for obj in objects:
            rest = obj.key[len(prefix) :]
            if "/" in rest:
                user = rest.split("/", 1)[0]
                if valid_id(user):
                    users.add(user)
            elif rest.startswith("status_") and rest.endswith(".json"):
                user = rest.removeprefix("status_").removesuffix(".json")
                if valid_id(user):
                    users.add(user)
                    statuses.add(user)
        return [await self._participant(prefix, user, user in statuses) for user in sorted(users)]

    async def _participant(self, prefix: str, user: str, has_status: bool) -> Participant:
        status = await get_json(self.storage, f"{prefix}status_{user}.json") if has_status else None
        marker = await self._marker(prefix, user)
        started_at = parse_started_at(marker.get("started_at")) if marker else None
        if status is None:
            return Participant(user, "missing", started_at)
        state = str(status.get("state") or "missing")
        error = status.get("error") if state == "failed" else None
        message = (
            f"{error.get('kind')}: {error.get('message')}" if isinstance(error, dict) else None
        )
        transcript = None
        if state == "done":
            transcript = await get_json(self.storage, f"{prefix}transcript_{user}.json", 64 << 20)
        return Participant(user, state, started_at, transcript, message)

    async def _marker(self, prefix: str, user: str) -> dict[str, Any] | None:
        try:
            found = await self.storage.get_bytes(
                f"{prefix}{user}/{self.layout.marker_name}", max_bytes=64 * 1024
            )
        except ValueError:
            return None
        if found is None:
            return None
        try:
            value = json.loads(found[0] or b"{}")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
