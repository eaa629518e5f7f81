"""Where a take lives in the bucket: every key of a take, built in one place.

    {recordings}/{meeting_id}/{take}/{user_id}/video_0.webm, ...   chunks (the client's)
    {recordings}/{meeting_id}/{take}/{user_id}/done.json           the marker (MARKER_NAME)
    {recordings}/{meeting_id}/{take}/{user_id}/.lock               the lease
    {recordings}/{meeting_id}/{take}/{user_id}/.follow             the follow lease
    {recordings}/{meeting_id}/{take}/final_video_{user_id}.mp4     outputs, the original
    {recordings}/{meeting_id}/{take}/subtitle_{user_id}.srt        service's names
    {recordings}/{meeting_id}/{take}/status_{user_id}.json         the status record

Each id is 1 to 128 characters of ``[A-Za-z0-9._-]``, not ``.`` or ``..``: any other key
is not a take's, and is never turned into a local path. The service builds one
``KeyLayout`` from the settings and hands it to whoever needs a key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.chunks import parse_chunk_name
from pipeline.process import output_names

ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
LOCK_NAME = ".lock"
FOLLOW_NAME = ".follow"


def valid_id(value: str) -> bool:
    """An id of the layout: 1 to 128 of [A-Za-z0-9._-], not "." or ".."."""
    return bool(ID.match(value)) and value not in (".", "..")


@dataclass(frozen=True, order=True)
class TakeRef:
    """A take: the job key. The same take is the same job, whoever delivers it."""

    meeting_id: str
    take: str
    user_id: str

    def __str__(self) -> str:
        return f"{self.meeting_id}/{self.take}/{self.user_id}"


@dataclass(frozen=True)
class KeyLayout:
    """Every key of a take under ``recordings`` (``RECORDINGS_PREFIX``, slashes trimmed)."""

    recordings: str = "recordings"
    marker_name: str = "done.json"

    def __post_init__(self) -> None:
        object.__setattr__(self, "recordings", self.recordings.strip("/"))

    @property
    def root(self) -> str:
        """The prefix every take's key starts with, with its trailing slash."""
        return self.recordings + "/"

    def take_prefix(self, ref: TakeRef) -> str:
        """The folder of the take's chunks, marker and lock."""
        return f"{self.root}{ref.meeting_id}/{ref.take}/{ref.user_id}/"

    def output_prefix(self, ref: TakeRef) -> str:
        """The folder its outputs and status go to (the take's, shared by its users)."""
        return f"{self.root}{ref.meeting_id}/{ref.take}/"

    def marker_key(self, ref: TakeRef) -> str:
        return self.take_prefix(ref) + self.marker_name

    def lock_key(self, ref: TakeRef) -> str:
        return self.take_prefix(ref) + LOCK_NAME

    def follow_key(self, ref: TakeRef) -> str:
        """The lease of the consumer following the take while it is recorded."""
        return self.take_prefix(ref) + FOLLOW_NAME

    def status_key(self, ref: TakeRef) -> str:
        return self.output_prefix(ref) + f"status_{ref.user_id}.json"

    def output_keys(self, ref: TakeRef, audio_output: str) -> dict[str, str]:
        """The key of each output by its role: the names the original service gave them
        (the pipeline's ``output_names``, one definition) in the take's output folder."""
        names = output_names(ref.user_id, audio_output)
        return {role: self.output_prefix(ref) + name for role, name in names.items()}

    def meeting_keys(self, ref: TakeRef) -> dict[str, str]:
        """The meeting's transcript files of the take ``ref`` is a participant of."""
        prefix = self.output_prefix(ref)
        return {kind: f"{prefix}transcript.{kind}" for kind in ("json", "srt", "vtt", "txt")}

    def split(self, key: str) -> tuple[TakeRef, str] | None:
        """The take a key belongs to and the object's name, or None if it is not of a take."""
        if not key.startswith(self.root):
            return None
        parts = key[len(self.root) :].split("/")
        if len(parts) != 4 or not all(valid_id(p) for p in parts[:3]) or not parts[3]:
            return None
        return TakeRef(parts[0], parts[1], parts[2]), parts[3]

    def marker_take(self, key: str) -> TakeRef | None:
        """The take whose marker this key is, or None."""
        found = self.split(key)
        if found is None or found[1] != self.marker_name:
            return None
        return found[0]

    def chunk_take(self, key: str) -> TakeRef | None:
        """The take whose chunk (a direct child of its prefix) this key is, or None."""
        found = self.split(key)
        if found is None or parse_chunk_name(found[1]) is None:
            return None
        return found[0]
