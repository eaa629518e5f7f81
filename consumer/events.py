"""Notification bodies become ``ObjectEvent``s (which key of which bucket).

Bodies come from R2 (Cloudflare Queues), from S3 through SQS (possibly inside an SNS
envelope), or from the local folder watcher. Anything that cannot be read is ``None`` or
an empty list, never an exception: a bad message must not stop the service.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from consumer import safejson

CREATE_ACTIONS = frozenset({"PutObject", "CopyObject", "CompleteMultipartUpload"})


@dataclass(frozen=True)
class ObjectEvent:
    key: str
    created: bool
    size: int | None = None
    etag: str | None = None
    bucket: str | None = None  # None where the source does not say (the local folder)


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
    bucket = body.get("bucket")
    return ObjectEvent(
        key=obj["key"],
        created=isinstance(action, str) and action in CREATE_ACTIONS,  # [] is unhashable
        size=size if isinstance(size, int) else None,
        etag=etag.strip('"') if isinstance(etag, str) else None,
        bucket=bucket if isinstance(bucket, str) else None,
    )


def parse_s3(body: Any) -> list[ObjectEvent]:
    """S3 notifications as SQS delivers them: Records[], an SNS envelope, or a test event."""
    if isinstance(body, dict) and isinstance(body.get("Message"), str) and "Records" not in body:
        try:
            body = safejson.loads(body["Message"])  # SNS envelope
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
            bucket = record["s3"].get("bucket", {}).get("name")
        except (KeyError, TypeError, AttributeError):
            continue
        size = obj.get("size")
        etag = obj.get("eTag")
        events.append(
            ObjectEvent(
                key=key,
                created=name.startswith("ObjectCreated"),
                size=size if isinstance(size, int) else None,
                etag=etag.strip('"') if isinstance(etag, str) else None,
                bucket=bucket if isinstance(bucket, str) else None,
            )
        )
    return events
