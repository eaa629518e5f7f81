"""The lease: one consumer at a time works on a take, whoever delivered its marker.

A lock object beside the take is created with a conditional PUT (``If-None-Match: *``).
It names its owner and an expiry, is renewed while the work goes on (``If-Match`` on its
own ETag), and a stale one (expired: its owner died) is taken over with ``If-Match`` on
the stale ETag, so of two consumers racing for it exactly one wins. A live lease is never
taken over, not even by its own owner: a second task of one consumer gets ``LeaseHeld``.

A lease that cannot be renewed before it expires (or that someone else replaced) is lost:
``lost`` is set, ``hold`` cancels the work it guards, and ``check`` refuses every write
that follows, so a consumer that lost its take never uploads beside the new owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog

from consumer import safejson
from consumer.background import Interrupted, until_set
from consumer.errors import LeaseHeld, LeaseLost, PreconditionFailed
from consumer.storage import Storage

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Renewed three times per lease length: two renewals may fail before it is lost.
RENEWALS_PER_LEASE = 3
LOCK_MAX_BYTES = 4096
# How long a release waits for a renewal in flight to be answered (milliseconds, as a rule).
RENEWAL_FINISH_SECONDS = 5.0


def read_lock(data: bytes) -> tuple[str, float]:
    """The owner and expiry (epoch s) a lock object names; an unreadable one is stale."""
    try:
        held = safejson.loads(data)
        return str(held["owner"]), float(held["expires"])
    except (ValueError, KeyError, TypeError):
        return "unknown", 0.0


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
        self.expires = 0.0
        self.lost = asyncio.Event()
        self._released = asyncio.Event()  # set by ``release``: the renewals end
        self._renewer: asyncio.Task[None] | None = None
        self._renewing = asyncio.Lock()  # one renewal at a time: each needs the last's ETag

    def _body(self) -> tuple[bytes, float]:
        expires = self.clock() + self.seconds
        return json.dumps({"owner": self.owner, "expires": expires}).encode(), expires

    async def _put(self, **condition: Any) -> None:
        body, expires = self._body()
        self.etag = await self.storage.put_bytes(self.key, body, **condition)
        self.expires = expires

    async def acquire(self) -> None:
        """Take the lease, or take over a stale one; ``LeaseHeld`` while it is live."""
        try:
            await self._put(if_none_match=True)
            return
        except PreconditionFailed:
            pass
        current = await self.storage.get_bytes(self.key, max_bytes=LOCK_MAX_BYTES)
        if current is None:  # released between our two calls: try once more
            await self._put(if_none_match=True)
            return
        data, etag = current
        owner, expires = read_lock(data)
        left = expires - self.clock()
        if left > 0:
            raise LeaseHeld("this consumer" if owner == self.owner else owner, left)
        try:
            await self._put(if_match=etag)
        except PreconditionFailed:
            raise LeaseHeld("another consumer", self.seconds) from None
        log.info("lease taken over", stale_owner=owner)

    def check(self) -> None:
        """Raise ``LeaseLost`` unless the lease is still ours and unexpired."""
        if self.lost.is_set() or self.clock() >= self.expires:
            self._lose("expired before it was renewed")
            raise LeaseLost(self.key)

    def _lose(self, why: str) -> None:
        if not self.lost.is_set():
            log.error("lease lost", key=self.key, reason=why)
            self.lost.set()

    async def renew(self) -> None:
        """Extend the lease by its length from now; ``LeaseLost`` if it is no longer ours.

        Renewals run one at a time (the background ones and the one before ``done``). A
        renewal cut short may have landed without us learning its ETag: a lock that still
        names this owner, while the lease has not expired, is ours, and renewed again."""
        async with self._renewing:
            self.check()
            try:
                await self._put(if_match=self.etag)
                return
            except PreconditionFailed:
                current = await self.storage.get_bytes(self.key, max_bytes=LOCK_MAX_BYTES)
            if current is None or read_lock(current[0])[0] != self.owner:
                self._lose("replaced by another consumer")
                raise LeaseLost(self.key)
            try:
                await self._put(if_match=current[1])
            except PreconditionFailed:
                self._lose("replaced by another consumer")
                raise LeaseLost(self.key) from None

    def keep_renewed(self) -> None:
        """Renew in the background until released; a renewal that cannot succeed before
        the lease expires loses it."""

        async def loop() -> None:
            while not self.lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), self.seconds / RENEWALS_PER_LEASE)
                if self._released.is_set():
                    return
                try:
                    await asyncio.wait_for(self.renew(), max(0.0, self.expires - self.clock()))
                except LeaseLost:
                    return
                except Exception as e:  # a passing failure: try again while time is left
                    log.warning("lease renewal failed", error=str(e) or type(e).__name__)
                    if self.clock() >= self.expires:
                        self._lose("renewals failed until it expired")

        self._renewer = asyncio.create_task(loop())

    async def hold(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` while the lease is held; cancel it and raise ``LeaseLost`` if lost."""
        try:
            return await until_set(self.lost, work)
        except Interrupted:
            raise LeaseLost(self.key) from None

    async def release(self) -> None:
        """Stop renewing and delete the lock if it is still ours (a lost one is left).

        The renewals are told to end, and one in flight is let finish: cancelled, its
        write may still land, leaving the lock an ETag this lease never saw, so the lock
        was not deleted and, its take final, stayed for ever (the sweep skips final
        takes). One still unanswered after ``RENEWAL_FINISH_SECONDS`` (the store is not
        answering: nor will the delete) is cancelled, as the drain is waiting."""
        self._released.set()  # at once: whatever happens to this call, renewals end
        if self._renewer is not None:
            await asyncio.wait({self._renewer}, timeout=RENEWAL_FINISH_SECONDS)
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self.etag is None or self.lost.is_set():
            return
        with contextlib.suppress(Exception):
            current = await self.storage.get_bytes(self.key, max_bytes=LOCK_MAX_BYTES)
            if current is not None and current[1] == self.etag:
                await self.storage.delete(self.key)
        self.etag = None
