"""Notification bodies become ``ObjectEvent``s; marker keys become ``TakeRef``s.

Bodies come from R2 (Cloudflare Queues), from S3 through SQS (possibly inside an SNS
envelope), or from the local folder watcher. Anything that cannot be read is ``None`` or
an empty list, never an exception: a bad message must not stop the service.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
CREATE_ACTIONS = frozenset({"PutObject", "CopyObject", "CompleteMultipartUpload"})


def valid_id(value: str) -> bool:
    """An id of the layout: 1 to 128 of [A-Za-z0-9._-], not "." or ".."."""
    return bool(ID.match(value)) and value not in (".", "..")


@dataclass(frozen=True)
class ObjectEvent:
    key: str
    created: bool
    size: int | None = None
    etag: str | None = None


@dataclass(frozen=True, order=True)
class TakeRef:
    """A take: the job key. The same take is the same job, whoever delivers it."""

    meeting_id: str
    take: str
    user_id: str

    def prefix(self, recordings: str) -> str:
        return f"{recordings}/{self.meeting_id}/{self.take}/{self.user_id}/"

    def output_prefix(self, recordings: str) -> str:
        return f"{recordings}/{self.meeting_id}/{self.take}/"

    def __str__(self) -> str:
        return f"{self.meeting_id}/{self.take}/{self.user_id}"


@dataclass(frozen=True)
class KeyLayout:
    """Where takes live in the bucket: ``{prefix}/{meeting}/{take}/{user}/{name}``."""

    recordings: str = "recordings"
    marker_name: str = "done.json"

    def split(self, key: str) -> tuple[TakeRef, str] | None:
        """The take a key belongs to and the object's name, or None if it is not of a take."""
        head = self.recordings.strip("/") + "/"
        if not key.startswith(head):
            return None
        parts = key[len(head) :].split("/")
        if len(parts) != 4 or not all(valid_id(p) for p in parts[:3]) or not parts[3]:
            return None
        return TakeRef(parts[0], parts[1], parts[2]), parts[3]

    def marker_take(self, key: str) -> TakeRef | None:
        """The take whose marker this key is, or None."""
        found = self.split(key)
        if found is None or found[1] != self.marker_name:
            return None
        return found[0]

    def marker_key(self, ref: TakeRef) -> str:
        return ref.prefix(self.recordings) + self.marker_name

    def status_key(self, ref: TakeRef) -> str:
        return ref.output_prefix(self.recordings) + f"status_{ref.user_id}.json"

    def lock_key(self, ref: TakeRef) -> str:
        return ref.prefix(self.recordings) + ".lock"


def parse_r2(body: Any) -> ObjectEvent | None:
    """An R2 event notification (PutObject, CopyObject, CompleteMultipartUpload, deletes)."""
    if not isinstance(body, dict):
        return None
    obj = body.get("object")
    action = body.get("action")
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
        return None
    size = obj.get("size")
    etag = obj.get("eTag")
    return ObjectEvent(
        key=obj["key"],
        created=action in CREATE_ACTIONS,
        size=size if isinstance(size, int) else None,
        etag=etag.strip('"') if isinstance(etag, str) else None,
    )


def parse_s3(body: Any) -> list[ObjectEvent]:
    """S3 notifications as SQS delivers them: Records[], an SNS envelope, or a test event."""
    if isinstance(body, dict) and isinstance(body.get("Message"), str) and "Records" not in body:
        try:
            body = json.loads(body["Message"])  # SNS envelope
        except ValueError:
            return []
    if not isinstance(body, dict) or not isinstance(body.get("Records"), list):
        return []  # s3:TestEvent and anything else
    events = []
    for record in body["Records"]:
        try:
            obj = record["s3"]["object"]
            key = urllib.parse.unquote_plus(obj["key"])
            name = str(record.get("eventName", ""))
        except (KeyError, TypeError):
            continue
        size = obj.get("size")
        etag = obj.get("eTag")
        events.append(
            ObjectEvent(
                key=key,
                created=name.startswith("ObjectCreated"),
                size=size if isinstance(size, int) else None,
                etag=etag.strip('"') if isinstance(etag, str) else None,
            )
        )
    return events
