"""The take's status record beside its outputs, the fingerprint of the input it was made
from, and what the bucket shows of a take (``look``): what a reader, the sweep and the
next delivery of the marker go by.

The record is written first (the claim), at each stage and last; only the lease holder
writes it, and every write checks the lease first. ``state`` is ``processing``, ``done``
or ``failed``; ``done`` or ``failed`` with the same fingerprint means there is nothing to do.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import structlog

from consumer import __version__, logs, metrics
from consumer.keys import KeyLayout, TakeRef
from consumer.lease import Lease
from consumer.storage import ObjectInfo, Storage, get_json
from pipeline.chunks import parse_chunk_name

log = structlog.get_logger(__name__)

FINAL_STATES = frozenset({"done", "failed"})
WAITING_FOR_CHUNKS = "waiting for chunks"

# A status record stays far below the 1 MiB every reader accepts (``get_json``), whatever
# the take holds: a record too large to read would fail every later delivery of its take
# (issue 11, item 1). Texts, warnings and the listed chunks are cut to these sizes; the
# fingerprint's hash still covers every chunk.
MAX_TEXT = 2000
MAX_WARNINGS = 50
MAX_LISTED_CHUNKS = 1000


def fingerprint(chunks: list[ObjectInfo], marker: ObjectInfo) -> dict[str, Any]:
    """Chunk names, sizes and ETags and the marker's ETag, as listed: new chunks or a new
    marker upload are a new input."""
    items = sorted((c.name, c.size, c.etag) for c in chunks)
    digest = hashlib.sha256(json.dumps([items, marker.etag]).encode()).hexdigest()
    found: dict[str, Any] = {
        "hash": digest,
        "marker_etag": marker.etag,
        "chunks": [{"name": n, "size": s, "etag": e} for n, s, e in items[:MAX_LISTED_CHUNKS]],
    }
    if len(items) > MAX_LISTED_CHUNKS:
        found["chunk_count"] = len(items)
    return found


def cut(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` at most ``limit`` characters long, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def bounded(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its open-ended parts (error, warnings, webhook) cut to size."""
    out = dict(record)
    error = out.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        out["error"] = {**error, "message": cut(error["message"])}
    warnings = out.get("warnings")
    if isinstance(warnings, list):
        kept = [cut(str(w), MAX_TEXT // 4) for w in warnings[:MAX_WARNINGS]]
        if len(warnings) > MAX_WARNINGS:
            kept.append(f"... and {len(warnings) - MAX_WARNINGS} more warnings")
        out["warnings"] = kept
    webhook = out.get("webhook")
    if isinstance(webhook, dict) and isinstance(webhook.get("error"), str):
        out["webhook"] = {**webhook, "error": cut(webhook["error"])}
    return out


class StatusRecord:
    """The record of one attempt at a take, written through to the bucket at each step."""

    def __init__(
        self,
        storage: Storage,
        key: str,
        lease: Lease,
        ref: TakeRef,
        *,
        fingerprint: dict[str, Any],
        previous: dict[str, Any],
        engine: str,
    ) -> None:
        self.storage = storage
        self.key = key
        self.lease = lease
        self.started = time.time()
        self.clock = metrics.StageClock()
        self.record: dict[str, Any] = {
            "meeting_id": ref.meeting_id,
            "take": ref.take,
            "user_id": ref.user_id,
            "attempts": int(previous.get("attempts", 0)) + 1,
            "fingerprint": fingerprint,
            "engine": engine,
            "version": __version__,
            "owner": lease.owner,
        }
        if "last_error" in previous:  # a failed attempt stays on record until the take ends
            self.record["last_error"] = previous["last_error"]

    async def write(self, state: str, stage: str) -> None:
        """Write the record with this state and stage; ``LeaseLost`` if the lease is not ours."""
        structlog.contextvars.bind_contextvars(stage=stage)
        self.lease.check()
        if self.clock.enter(stage):
            log.info("stage started", state=state)
        self.record.update(
            state=state,
            stage=stage,
            updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            elapsed=round(time.time() - self.started, 3),
        )
        body = json.dumps(logs.mask(bounded(self.record)), indent=2).encode()
        await self.storage.put_bytes(self.key, body, "application/json")

    async def rewrite(self) -> None:
        """Write the record again with the state and stage it has (a detail added to a
        final record: the webhook's outcome)."""
        await self.write(self.record["state"], self.record["stage"])


@dataclass(frozen=True)
class Seen:
    """A take as the bucket shows it: marker, chunks, their fingerprint, the last status."""

    marker: ObjectInfo
    chunks: list[ObjectInfo]
    fingerprint: dict[str, Any]
    previous: dict[str, Any]

    @property
    def same_input(self) -> bool:
        return bool(self.previous.get("fingerprint", {}).get("hash") == self.fingerprint["hash"])

    @property
    def finished(self) -> bool:
        """Made (or failed for good) from this very input: nothing to do."""
        return self.same_input and self.previous.get("state") in FINAL_STATES

    def retry_in(self, now: float) -> float:
        """Seconds until an earlier attempt at this input may be tried again (0: now)."""
        at = self.previous.get("next_try_at")
        if not self.same_input or self.previous.get("state") != "processing" or not at:
            return 0.0
        try:
            then = calendar.timegm(time.strptime(str(at), "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            return 0.0
        return max(0.0, then - now)

    @property
    def claimed(self) -> bool:
        """Claimed from this input by whoever holds the lease (not waiting for chunks)."""
        stage = self.previous.get("stage")
        return (
            self.same_input
            and self.previous.get("state") == "processing"
            and stage
            not in (
                WAITING_FOR_CHUNKS,
                None,
            )
        )


async def listing(
    storage: Storage, keys: KeyLayout, ref: TakeRef
) -> tuple[ObjectInfo | None, list[ObjectInfo]]:
    """The take's marker (None while it is being recorded) and chunks, as listed now."""
    prefix = keys.take_prefix(ref)
    objects = await storage.list_objects(prefix)
    marker = next((o for o in objects if o.key == keys.marker_key(ref)), None)
    # Only the take prefix's direct children are chunks: ``{prefix}zzz/video_0.webm`` has
    # the name ``video_0.webm`` too, and would replace the real one (issue 11, item 6).
    chunks = [o for o in objects if o.key == prefix + o.name and parse_chunk_name(o.name)]
    return marker, chunks


async def look(storage: Storage, keys: KeyLayout, ref: TakeRef) -> Seen | None:
    """What the bucket holds of the take: its input and status; None without a marker."""
    marker, chunks = await listing(storage, keys, ref)
    if marker is None:
        return None
    previous = await get_json(storage, keys.status_key(ref)) or {}
    return Seen(marker, chunks, fingerprint(chunks, marker), previous)
