"""The reconcile sweep, the safety net: markers whose take has no final status get made.

Notifications can be lost, expire or be dead-lettered, and a consumer can die holding a
claimed take (its marker's message already acknowledged). The sweep lists the bucket
(paginated) and finds every marker whose take has no status, a status older than the
marker, a final status of another marker (uploaded again since), or a ``processing``
status whose lease is gone or stale; it hands those takes to the same job as a message
would. Takes found final are remembered, so a quiet sweep costs one listing. Many
consumers may sweep one bucket: the lease decides who works.
"""

from __future__ import annotations

from consumer.keys import KeyLayout, TakeRef
from consumer.lease import LOCK_MAX_BYTES, read_lock
from consumer.status import FINAL_STATES
from consumer.storage import ObjectInfo, Storage, get_json


class Sweep:
    def __init__(self, storage: Storage, keys: KeyLayout) -> None:
        self.storage = storage
        self.keys = keys
        self._final: set[tuple[TakeRef, str]] = set()

    async def pending(self, now: float) -> list[TakeRef]:
        """The takes that need work, as far as the bucket says, in key order."""
        objects = {obj.key: obj for obj in await self.storage.list_objects(self.keys.root)}
        markers: dict[TakeRef, ObjectInfo] = {}
        for obj in objects.values():
            ref = self.keys.marker_take(obj.key)
            if ref is not None:
                markers[ref] = obj
        found = []
        for ref, marker in sorted(markers.items()):
            if (ref, marker.etag) in self._final:
                continue
            listed = objects.get(self.keys.status_key(ref))
            if listed is None or listed.modified < marker.modified:
                found.append(ref)
                continue
            status = await get_json(self.storage, self.keys.status_key(ref)) or {}
            made_from = status.get("fingerprint", {}).get("marker_etag")
            if status.get("state") in FINAL_STATES and made_from == marker.etag:
                self._final.add((ref, marker.etag))
            elif status.get("state") in FINAL_STATES or not await self._held(ref, now):
                found.append(ref)
        return found

    async def _held(self, ref: TakeRef, now: float) -> bool:
        """Whether a live lease says someone is working on the take."""
        found = await self.storage.get_bytes(self.keys.lock_key(ref), max_bytes=LOCK_MAX_BYTES)
        return found is not None and read_lock(found[0])[1] > now
