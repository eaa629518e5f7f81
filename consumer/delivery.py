"""What becomes of one message, or of one take the sweep found: claim its takes, settle
the message (acknowledged once every take is claimed or needs nothing; retried with the
longest delay asked for otherwise), then make what was claimed.

Errors are sorted here by phase. Before the claim, a passing failure (the store, a bug)
is a retry of the message; after it, the message is settled already, so a failure is
logged and the take, its lease released, is left to the sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from consumer import logs, metrics
from consumer.errors import LeaseLost, SourceUnavailable, StorageError, disk_full
from consumer.follow import Follower, GaveUp
from consumer.keys import TakeRef
from consumer.retry import take_retry_delay
from consumer.settings import Settings
from consumer.sources import Message, Source
from consumer.take import Claim, Outcome, TakeJob
from pipeline.errors import reason as reason_of

log = structlog.get_logger(__name__)

# While its takes are claimed, a message is kept hidden for this many lease lengths ahead,
# extended every lease length (SQS; a pull consumer cannot extend).
HIDE_LEASES = 3


class Delivery:
    """The phases of the takes the loop dispatches, one call per busy worker."""

    def __init__(self, job: TakeJob, source: Source, settings: Settings) -> None:
        self.job = job
        self.source = source
        self.settings = settings
        self.takes_handled = 0

    async def message(self, message: Message, refs: list[TakeRef]) -> None:
        """Claim the message's takes, settle the message, then make what was claimed."""
        claims: list[Claim] = []
        delays: list[float] = []
        keeper = asyncio.create_task(self._keep_hidden(message))
        try:
            for ref in refs:
                step = await self._claim(ref, message.attempts)
                if isinstance(step, Claim):
                    claims.append(step)
                elif not step.ack:
                    delays.append(step.delay)
        except asyncio.CancelledError:
            # The drain ran out while the message was held: visible again now (SQS:
            # visibility 0), not when the hiding above runs out; the claims are let go.
            await self.settle([message], 0.0)
            await self._let_go(claims)
            raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await self.settle([message], max(delays) if delays else None)
        for n, claim in enumerate(claims):
            try:
                await self._work(claim)
            except asyncio.CancelledError:
                await self._let_go(claims[n + 1 :])
                raise

    async def _let_go(self, claims: list[Claim]) -> None:
        """Release the leases of claims whose work will not start (the sweep has them)."""
        for claim in claims:
            metrics.RUNNING.dec()
            await claim.lease.release()

    async def swept(self, ref: TakeRef) -> None:
        """A take the sweep found: no message to settle."""
        step = await self._claim(ref, attempts=1)
        if isinstance(step, Claim):
            await self._work(step)

    async def follow(self, follower: Follower) -> str | None:
        """A take followed while it is recorded, until its marker is claimed, then made
        like any other; a follower that gives up after the marker came makes the take
        whole at once. None when the take was made; else why it was given up."""
        ref = follower.ref

        def bind() -> None:
            structlog.contextvars.bind_contextvars(**logs.take_fields(ref), stage="following")

        async def claim() -> Claim | Outcome:
            try:
                return await self._claim(ref, attempts=1)
            finally:
                bind()

        bind()
        try:
            async with follower.following() as lease:
                log.info("take followed while it is recorded")
                try:
                    claim_ = await lease.hold(follower.until_claimed(claim))
                except LeaseLost:
                    raise GaveUp("its follow lease was lost") from None
                await self._work(claim_, following=follower)
                return None
        except GaveUp as e:
            log.info("take no longer followed", reason=str(e))
            reason = str(e)
        except StorageError as e:
            log.warning("take not followed: the bucket failed", error=str(e))
            reason = str(e)
        except Exception as e:
            if disk_full(e):  # a passing fault of this machine: followed again later
                log.error("take not followed: no room in WORK_DIR", error=reason_of(e))
            else:
                log.exception("take not followed: unexpected error")
            reason = f"{type(e).__name__}: {reason_of(e)}"
        finally:
            structlog.contextvars.unbind_contextvars(*logs.TAKE_FIELDS, "stage")
        if follower.marker_seen and not follower.handed_over:
            await self.swept(ref)
        return reason

    async def _claim(self, ref: TakeRef, attempts: int) -> Claim | Outcome:
        """The claim phase, counted as running until its work ends (or it claims nothing)."""
        metrics.RUNNING.inc()
        claimed = False
        started = time.monotonic()
        structlog.contextvars.bind_contextvars(**logs.take_fields(ref), stage="start")
        try:
            step = await self._claim_or_retry(ref, attempts)
            claimed = isinstance(step, Claim)
            if isinstance(step, Outcome):
                metrics.record_take(step.state, time.monotonic() - started)
            return step
        finally:
            if not claimed:
                metrics.RUNNING.dec()
            structlog.contextvars.unbind_contextvars(*logs.TAKE_FIELDS, "stage")

    async def _claim_or_retry(self, ref: TakeRef, attempts: int) -> Claim | Outcome:
        """The take job's claim; a passing failure becomes a retry, never a crash."""
        try:
            return await self.job.claim(ref)
        except StorageError as e:
            log.warning("storage error; will retry", error=str(e))
            delay = take_retry_delay(attempts, self.settings.retry_delay_seconds)
            return Outcome("retry", str(e), delay)
        except Exception as e:
            log.exception("unexpected error; will retry")
            delay = take_retry_delay(attempts, self.settings.retry_delay_seconds, unexpected=True)
            return Outcome("retry", f"{type(e).__name__}: {e}", delay)

    async def _work(self, claim: Claim, following: Follower | None = None) -> None:
        """The work phase; its message is settled already, so failures only get logged."""
        started = time.monotonic()
        state = "retry"  # what an interrupted take comes to: the sweep takes it up again
        structlog.contextvars.bind_contextvars(**logs.take_fields(claim.ref), stage="work")
        try:
            state = (await self.job.work(claim, following)).state
        except StorageError as e:
            log.warning("storage error; the sweep will take the take up again", error=str(e))
        except Exception:
            log.exception("unexpected error; the sweep will take the take up again")
        finally:
            self.takes_handled += 1
            metrics.RUNNING.dec()
            metrics.record_take(state, time.monotonic() - started)
            structlog.contextvars.unbind_contextvars(*logs.TAKE_FIELDS, "stage")

    async def settle(self, messages: list[Message], retry_after: float | None) -> None:
        """Acknowledge the messages, or retry them after ``retry_after`` seconds."""
        try:
            if retry_after is None:
                await self.source.ack(messages)
                metrics.MESSAGES.labels("acked").inc(len(messages))
            else:
                for message in messages:
                    await self.source.retry(message, retry_after)
                metrics.MESSAGES.labels("retried").inc(len(messages))
        except SourceUnavailable as e:
            log.warning("could not settle messages; they will come back", error=str(e))

    async def _keep_hidden(self, message: Message) -> None:
        """Keep the message invisible while its takes are claimed (where the source can)."""
        while True:
            try:
                await self.source.extend(message, self.settings.lease_seconds * HIDE_LEASES)
            except SourceUnavailable as e:
                log.warning("could not extend the message's visibility", error=str(e))
            await asyncio.sleep(self.settings.lease_seconds)
