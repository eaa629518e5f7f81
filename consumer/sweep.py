"""The reconcile sweep, the safety net: markers whose take has no final status get made,
and takes being recorded that nobody follows get followed.

Notifications can be lost, expire or be dead-lettered, and a consumer can die holding a
claimed take (its marker's message already acknowledged). The sweep lists the bucket
(paginated) and finds every marker whose take has no status, a status older than the
marker, a final status of another marker (uploaded again since), or a ``processing``
status whose lease is gone or stale; it hands those takes to the same job as a message
would. Takes found final are remembered, so a quiet sweep costs one listing. Many
consumers may sweep one bucket: the lease decides who works.

From the same listing it finds the takes being recorded (issue 13): chunks, no marker, a
chunk written within ``recorded_within`` seconds (older ones are abandoned), and no live
follow lease (one renewed within a lease length: renewals rewrite it several times per
length). The service follows them when it has a worker to spare.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consumer.keys import FOLLOW_NAME, KeyLayout, TakeRef
from consumer.lease import LOCK_MAX_BYTES, read_lock
from consumer.status import FINAL_STATES
from consumer.storage import ObjectInfo, Storage, get_json
from pipeline.chunks import parse_chunk_name


@dataclass
class Found:
    """What one sweep found: takes to make, takes to follow."""

    pending: list[TakeRef] = field(default_factory=list)
    recording: list[TakeRef] = field(default_factory=list)


class Sweep:
    def __init__(
        self,
        storage: Storage,
        keys: KeyLayout,
        *,
        lease_seconds: float = 120.0,
        recorded_within: float = 0.0,
    ) -> None:
        self.storage = storage
        self.keys = keys
        self.lease_seconds = lease_seconds
        self.recorded_within = recorded_within  # 0: takes being recorded are not looked for
        self._final: set[tuple[TakeRef, str]] = set()

    async def pending(self, now: float) -> list[TakeRef]:
        """The takes that need work, as far as the bucket says, in key order."""
        return (await self.scan(now)).pending

    async def scan(self, now: float) -> Found:
        """The takes that need work and those being recorded, in key order."""
        objects = {obj.key: obj for obj in await self.storage.list_objects(self.keys.root)}
        markers: dict[TakeRef, ObjectInfo] = {}
        newest_chunk: dict[TakeRef, float] = {}
        followed: dict[TakeRef, float] = {}
        for obj in objects.values():
            split = self.keys.split(obj.key)
            if split is None:
                continue
            ref, name = split
            if name == self.keys.marker_name:
                markers[ref] = obj
            elif name == FOLLOW_NAME:
                followed[ref] = obj.modified
            elif parse_chunk_name(name) is not None:
                newest_chunk[ref] = max(newest_chunk.get(ref, 0.0), obj.modified)
        found = Found()
        for ref, marker in sorted(markers.items()):
            if (ref, marker.etag) in self._final:
                continue
            listed = objects.get(self.keys.status_key(ref))
            if listed is None or listed.modified < marker.modified:
                found.pending.append(ref)
                continue
            status = await get_json(self.storage, self.keys.status_key(ref)) or {}
            made_from = status.get("fingerprint", {}).get("marker_etag")
            if status.get("state") in FINAL_STATES and made_from == marker.etag:
                self._final.add((ref, marker.etag))
            elif status.get("state") in FINAL_STATES or not await self._held(ref, now):
                found.pending.append(ref)
        if self.recorded_within > 0:
            for ref, written in sorted(newest_chunk.items()):
                if (
                    ref not in markers
                    and now - written < self.recorded_within
                    and now - followed.get(ref, 0.0) > self.lease_seconds
                ):
                    found.recording.append(ref)
        return found

    async def _held(self, ref: TakeRef, now: float) -> bool:
        """Whether a live lease says someone is working on the take."""
        found = await self.storage.get_bytes(self.keys.lock_key(ref), max_bytes=LOCK_MAX_BYTES)
        return found is not None and read_lock(found[0])[1] > now
