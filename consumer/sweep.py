"""The reconcile sweep: markers whose take has no final status get processed anyway.

Notifications can be lost or expire; the sweep lists the bucket (paginated), finds every
marker whose take has no status, a status older than the marker, or a ``processing``
status nobody has touched for longer than a lease, and hands those takes to the same job
as a message would. Takes found final are remembered, so a quiet sweep costs a listing.
Many consumers may sweep one bucket: the lease decides who works.
"""

from __future__ import annotations

from consumer.keys import KeyLayout, TakeRef
from consumer.storage import ObjectInfo, Storage, get_json


class Sweep:
    def __init__(self, storage: Storage, keys: KeyLayout, stale_after: float) -> None:
        self.storage = storage
        self.keys = keys
        self.stale_after = stale_after
        self._final: set[tuple[TakeRef, str]] = set()

    async def pending(self, now: float) -> list[TakeRef]:
        """The takes that need work, as far as the bucket says."""
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
            status = objects.get(self.keys.status_key(ref))
            if status is None or status.modified < marker.modified:
                found.append(ref)
                continue
            state = await self._state(ref)
            if state in ("done", "failed"):
                self._final.add((ref, marker.etag))
            elif now - status.modified > self.stale_after:
                found.append(ref)
        return found

    async def _state(self, ref: TakeRef) -> str | None:
        status = await get_json(self.storage, self.keys.status_key(ref))
        state = status.get("state") if status is not None else None
        return state if isinstance(state, str) else None
