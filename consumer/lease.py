"""The lease: one consumer at a time works on a take, whoever delivered its marker.

A lock object beside the take is created with a conditional PUT (``If-None-Match: *``).
It names its owner and an expiry, is renewed while the work goes on (``If-Match`` on its
own ETag), and a stale one (expired: its owner died) is taken over with ``If-Match`` on
the stale ETag, so of two consumers racing for it exactly one wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

import structlog

from consumer.errors import LeaseHeld, LeaseLost, PreconditionFailed
from consumer.storage import Storage

log = structlog.get_logger(__name__)


class Lease:
    def __init__(
        self,
        storage: Storage,
        key: str,
        owner: str,
        seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.key = key
        self.owner = owner
        self.seconds = seconds
        self.clock = clock
        self.etag: str | None = None
        self.lost = False
        self._renewer: asyncio.Task[None] | None = None

    def _body(self) -> bytes:
        expires = self.clock() + self.seconds
        return json.dumps({"owner": self.owner, "expires": expires}).encode()

    async def acquire(self) -> None:
        """Take the lease, or take over a stale one; raises ``LeaseHeld`` if it is live."""
        try:
            self.etag = await self.storage.put_bytes(self.key, self._body(), if_none_match=True)
            return
        except PreconditionFailed:
            pass
        current = await self.storage.get_bytes(self.key, max_bytes=4096)
        if current is None:  # released between our two calls: try once more
            self.etag = await self.storage.put_bytes(self.key, self._body(), if_none_match=True)
            return
        data, etag = current
        try:
            held = json.loads(data)
            owner, expires = str(held["owner"]), float(held["expires"])
        except (ValueError, KeyError, TypeError):
            owner, expires = "unknown", 0.0  # an unreadable lock is a stale one
        left = expires - self.clock()
        if left > 0 and owner != self.owner:
            raise LeaseHeld(owner, left)
        try:
            self.etag = await self.storage.put_bytes(self.key, self._body(), if_match=etag)
        except PreconditionFailed:
            raise LeaseHeld("another consumer", self.seconds) from None
        log.info("lease taken over", stale_owner=owner)

    async def renew(self) -> None:
        try:
            self.etag = await self.storage.put_bytes(self.key, self._body(), if_match=self.etag)
        except PreconditionFailed:
            self.lost = True
            raise LeaseLost(self.key) from None

    def keep_renewed(self) -> None:
        """Renew in the background at a third of the lease's length until released."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.seconds / 3)
                try:
                    await self.renew()
                except LeaseLost:
                    log.error("lease lost", key=self.key)
                    return
                except Exception as e:
                    log.warning("lease renewal failed", error=str(e))

        self._renewer = asyncio.create_task(loop())

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self.etag is None or self.lost:
            return
        with contextlib.suppress(Exception):
            current = await self.storage.get_bytes(self.key, max_bytes=4096)
            if current is not None and current[1] == self.etag:
                await self.storage.delete(self.key)
        self.etag = None
