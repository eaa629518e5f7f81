"""The takes this consumer follows while they are recorded (``consumer.follow``): which
it may start, the workers they hold, and when one is let go.

A follower holds a worker from its start until its take is made or given up, and counts
as a take for CONCURRENCY. A take that has ended always comes first: its worker is
``worker_slot``'s to give, and when every worker is held, the newest follower whose take
has not ended is given up for it (its take is made whole at its marker, or followed
again later). A take given up is not followed again before its follow lease would have
run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import structlog

from consumer import logs
from consumer.follow import Follower
from consumer.keys import TakeRef
from consumer.settings import Settings

log = structlog.get_logger(__name__)

# Takes given up are remembered (not to follow again too soon) up to this many.
MAX_REMEMBERED = 10_000


class Followers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.by_take: dict[TakeRef, tuple[Follower, asyncio.Task[None]]] = {}
        self.unfollowed: dict[TakeRef, float] = {}  # not to follow before (monotonic)
        self.making = 0  # takes that have ended, in a worker (or waiting for one)

    def __contains__(self, ref: object) -> bool:
        return ref in self.by_take

    def get(self, ref: TakeRef) -> Follower | None:
        found = self.by_take.get(ref)
        return found[0] if found is not None else None

    def may_follow(self, ref: TakeRef) -> bool:
        """Following is on, and the take was not given up a moment ago."""
        return self.settings.follow_takes and self.unfollowed.get(ref, 0.0) <= time.monotonic()

    def started(self, follower: Follower, task: asyncio.Task[None]) -> None:
        self.by_take[follower.ref] = (follower, task)

    def ended(self, ref: TakeRef, gave_up: bool) -> None:
        self.by_take.pop(ref, None)
        if gave_up:
            now = time.monotonic()
            if len(self.unfollowed) >= MAX_REMEMBERED:
                self.unfollowed = {r: t for r, t in self.unfollowed.items() if t > now}
            self.unfollowed[ref] = now + self.settings.lease_seconds

    def preemptible(self) -> list[tuple[Follower, asyncio.Task[None]]]:
        """Followers holding a worker that a take that has ended may have."""
        return [
            (f, task)
            for f, task in self.by_take.values()
            if f.holds_worker and not f.making and not f.marker_seen
        ]

    @contextlib.asynccontextmanager
    async def worker_slot(self) -> AsyncIterator[None]:
        """Held by a take that has ended while its worker runs (``TakeJob.worker_slot``)."""
        self.making += 1
        try:
            holding = sum(1 for f, _ in self.by_take.values() if f.holds_worker)
            preemptible = self.preemptible()
            if holding + self.making > self.settings.concurrency and preemptible:
                follower, task = max(preemptible, key=lambda pair: pair[0].started)
                log.info(
                    "a take that has ended needs a worker: following stopped",
                    **logs.take_fields(follower.ref),
                )
                task.cancel()
            yield
        finally:
            self.making -= 1

    def stop(self) -> None:
        """Give up every take not ended yet: another consumer follows it, or makes it
        whole at its marker. Takes being made drain like any other."""
        for follower, task in self.by_take.values():
            if not follower.making:
                task.cancel()
