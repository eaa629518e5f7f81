"""The lease on a real S3 server (moto) and on a folder: one owner at a time, a live
lease never taken over, and a lost lease that stops the work it guards."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from consumer.errors import LeaseHeld, LeaseLost
from consumer.lease import Lease
from consumer.storage import Storage
from tests.support.inprocess import until
from tests.support.s3 import s3, s3_storage
from tests.support.s3proxy import S3Proxy, renewals_of_locks


async def test_lease_one_winner_and_stale_takeover(storage: Storage) -> None:
    """Two consumers race: one wins. A dead owner's expired lease is taken over."""
    clock = [1000.0]
    a = Lease(storage, "t/.lock", "a", 60, clock=lambda: clock[0])
    b = Lease(storage, "t/.lock", "b", 60, clock=lambda: clock[0])
    results = await asyncio.gather(a.acquire(), b.acquire(), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["LeaseHeld", "NoneType"]
    winner, loser = (a, b) if results[0] is None else (b, a)
    with pytest.raises(LeaseHeld):
        await loser.acquire()
    clock[0] += 61  # the winner died without releasing
    await loser.acquire()
    with pytest.raises(LeaseLost):
        await winner.renew()
    await loser.release()
    assert await storage.get_bytes("t/.lock") is None
    await storage.close()


async def test_a_live_lease_is_never_taken_over_not_even_by_its_owner(storage: Storage) -> None:
    """A second task of the same consumer is told the lease is held, by this consumer."""
    first = Lease(storage, "t/.lock", "me", 60)
    await first.acquire()
    with pytest.raises(LeaseHeld, match="this consumer"):
        await Lease(storage, "t/.lock", "me", 60).acquire()
    await first.release()
    await Lease(storage, "t/.lock", "me", 60).acquire()  # released: free again
    await storage.close()


async def test_a_lease_replaced_by_another_is_lost_at_once(storage: Storage) -> None:
    lease = Lease(storage, "t/.lock", "me", 60)
    await lease.acquire()
    await storage.put_bytes("t/.lock", b'{"owner": "other", "expires": 9e12}')
    with pytest.raises(LeaseLost):
        await lease.renew()
    assert lease.lost.is_set()
    with pytest.raises(LeaseLost):
        lease.check()
    await lease.release()  # a lost lease is not ours to delete
    assert await storage.get_bytes("t/.lock") is not None
    await storage.close()


async def test_renewals_at_once_or_cut_short_do_not_lose_the_lease(storage: Storage) -> None:
    """The renewal before 'done' meets a background one: they take turns. A renewal whose
    write landed unseen (cut short by its timeout) leaves a lock naming us: still ours."""
    lease = Lease(storage, "t/.lock", "me", 60)
    await lease.acquire()
    await asyncio.gather(*(lease.renew() for _ in range(4)))
    landed = json.dumps({"owner": "me", "expires": time.time() + 60}).encode()
    await storage.put_bytes("t/.lock", landed)  # our own write, its ETag never seen
    await lease.renew()
    assert not lease.lost.is_set()
    lease.check()
    await lease.release()
    assert await storage.get_bytes("t/.lock") is None
    await storage.close()


async def test_renewals_failing_until_expiry_lose_the_lease_and_stop_its_work(
    bucket: str,
) -> None:
    """The store answers 503 to every renewal: when the lease runs out, the work is
    cancelled (not left running beside a new owner) and no write gets past ``check``."""
    with S3Proxy(os.environ["WHISP_TEST_S3"], fail=renewals_of_locks) as proxy:
        storage = s3_storage(bucket, proxy.url)
        lease = Lease(storage, "t/.lock", "me", 1.5)
        await lease.acquire()
        lease.keep_renewed()
        expires, started = lease.expires, time.monotonic()
        finished = []

        async def work() -> None:
            await asyncio.sleep(30)
            finished.append(True)

        with pytest.raises(LeaseLost):
            await lease.hold(work())
        assert time.time() >= expires - 0.05  # lost when it ran out, not before
        assert time.monotonic() - started < 10 and finished == []
        with pytest.raises(LeaseLost):
            lease.check()
        assert len(proxy.requests("PUT", "/t/.lock")) >= 2  # acquired, then renewals tried
        await lease.release()
        await storage.close()


async def test_a_release_while_a_renewal_is_in_flight_leaves_no_lock(bucket: str) -> None:
    """Found by the crash matrix: now and then a take was done and its ``.lock`` stayed for
    ever (the sweep skips final takes). The release cancelled a renewal whose write had
    reached the store, its answer not yet back: the lock's ETag was one the lease never
    saw, so the release did not delete it. A release lets a renewal in flight finish."""

    def late(method: str, path: str, headers: dict[str, str]) -> str | None:
        return "answered-late" if renewals_of_locks(method, path, headers) else None

    with S3Proxy(os.environ["WHISP_TEST_S3"], chaos=late, delay=1.0) as proxy:
        storage = s3_storage(bucket, proxy.url)
        lease = Lease(storage, "t/.lock", "me", 3)  # renewed every second
        await lease.acquire()
        lease.keep_renewed()
        await until(lambda: proxy.injected.get("answered-late"), 5, "a renewal on its way")
        await lease.release()
        await storage.close()
    assert s3().list_objects_v2(Bucket=bucket, Prefix="t/")["KeyCount"] == 0
