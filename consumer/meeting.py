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

from dataclasses import dataclass

import structlog

from consumer.errors import PreconditionFailed, StorageError
from consumer.keys import KeyLayout, TakeRef, valid_id
from consumer.marker import MarkerOptions, read_marker
from consumer.storage import Storage, content_type, get_json
from consumer.webhook import Notifier
from pipeline import meeting
from pipeline.meeting import Participant

log = structlog.get_logger(__name__)

# A commit refused this many times in a row (takes finishing one after another): give up
# for now; the next take of the meeting to finish rebuilds the files again.
ATTEMPTS = 5
TRANSCRIPT_BYTES = 64 << 20


@dataclass(frozen=True)
class MeetingFiles:
    """What a rebuild left in the bucket (keys by kind), and whether it wrote them."""

    keys: dict[str, str]
    changed: bool
    participants: int


class MeetingTranscript:
    def __init__(self, storage: Storage, keys: KeyLayout) -> None:
        self.storage = storage
        self.keys = keys

    async def rebuild(self, ref: TakeRef) -> MeetingFiles:
        """Rebuild the meeting files of ``ref``'s take from every participant in the bucket."""
        keys = self.keys.meeting_keys(ref)
        for _ in range(ATTEMPTS):
            current = await self.storage.get_bytes(keys["json"], max_bytes=TRANSCRIPT_BYTES)
            participants = await self._participants(ref)
            merged = meeting.merge(ref.meeting_id, ref.take, participants)
            body = meeting.to_json(merged)
            if current is not None and current[0].decode(errors="replace") == body:
                return MeetingFiles(keys, False, len(participants))
            texts = {
                "srt": meeting.to_srt(merged),
                "vtt": meeting.to_vtt(merged),
                "txt": meeting.to_text(merged),
            }
            for kind, text in texts.items():
                await self.storage.put_bytes(keys[kind], text.encode(), content_type(keys[kind]))
            try:
                await self.storage.put_bytes(
                    keys["json"],
                    body.encode(),
                    content_type(keys["json"]),
                    if_none_match=current is None,
                    if_match=current[1] if current is not None else None,
                )
            except PreconditionFailed:
                log.info("meeting transcript changed meanwhile; rebuilding")
                continue
            log.info("meeting transcript written", participants=len(participants))
            return MeetingFiles(keys, True, len(participants))
        raise PreconditionFailed(f"{keys['json']}: changed {ATTEMPTS} times while rebuilding")

    async def _participants(self, ref: TakeRef) -> list[Participant]:
        """Everyone with chunks, a marker or a status under the take, and how far they got."""
        prefix = self.keys.output_prefix(ref)
        users: set[str] = set()
        for obj in await self.storage.list_objects(prefix):
            rest = obj.key[len(prefix) :]
            if "/" in rest:
                user = rest.split("/", 1)[0]
            elif rest.startswith("status_") and rest.endswith(".json"):
                user = rest.removeprefix("status_").removesuffix(".json")
            else:
                continue
            if valid_id(user):
                users.add(user)
        return [
            await self._participant(TakeRef(ref.meeting_id, ref.take, user))
            for user in sorted(users)
        ]

    async def _participant(self, ref: TakeRef) -> Participant:
        status = await get_json(self.storage, self.keys.status_key(ref))
        started_at = await self._started_at(ref)
        if status is None:
            return Participant(ref.user_id, "missing", started_at)
        state = str(status.get("state") or "missing")
        error = status.get("error") if state == "failed" else None
        message = (
            f"{error.get('kind')}: {error.get('message')}" if isinstance(error, dict) else None
        )
        transcript = None
        if state == "done":
            key = self.keys.output_keys(ref, "none")["transcript"]
            transcript = await get_json(self.storage, key, TRANSCRIPT_BYTES)
        return Participant(ref.user_id, state, started_at, transcript, message)

    async def _started_at(self, ref: TakeRef) -> float | None:
        """When the participant's recorder started, as its marker says (None if unsaid)."""
        options = await read_marker(self.storage, self.keys.marker_key(ref))
        return options.started_at if isinstance(options, MarkerOptions) else None


async def rebuild_and_announce(
    storage: Storage, keys: KeyLayout, notifier: Notifier | None, ref: TakeRef
) -> None:
    """The meeting's transcript files, now that the participant ``ref``'s take has ended,
    and a ``meeting_transcript`` notice when they changed. Never the take's failure: the
    next take of the meeting to end rebuilds them."""
    structlog.contextvars.bind_contextvars(stage="meeting transcript")
    try:
        files = await MeetingTranscript(storage, keys).rebuild(ref)
    except StorageError as e:
        log.warning("meeting transcript not rebuilt", error=str(e))
        return
    # A meeting of one has the take's own transcript: only a real meeting is news.
    if files.changed and files.participants > 1 and notifier is not None:
        try:
            notice = await notifier.notify(ref, "meeting_transcript", files.keys, None)
        except Exception:  # a bug in sending must not undo a finished take
            log.exception("meeting transcript notice failed unexpectedly")
            return
        log.info("meeting transcript notice", state=notice.get("state"))
