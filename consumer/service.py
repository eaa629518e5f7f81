"""The loop: pull what can start now, claim, acknowledge, work; sweep; drain on SIGTERM.

Delivery is at least once: a marker may arrive twice, on two machines at once. The take
job makes that safe (lease, fingerprint); the loop moves messages:

- It asks for ``min(BATCH_SIZE, free workers)`` messages and none while every worker is
  busy (a finished take wakes it), so no marker waits in memory while its visibility
  timeout runs out. When the queue says more is waiting, it pulls again at once.
- Messages that are not markers of this bucket's layout are acknowledged at once, in one
  call; a marker of a take this consumer is already on is acknowledged too (the running
  take carries it). A take is marked running when it is dispatched, not when it starts.
- A marker's take is claimed (lease held, status ``processing`` written), then its
  message acknowledged: from then on the bucket carries the take, whatever its length
  and the queue's visibility timeout. A take that cannot be claimed yet (chunks still
  arriving, lease held elsewhere) has its message retried with a delay.
- The reconcile sweep (on by default, every SWEEP_INTERVAL_SECONDS with jitter) runs the
  takes the bucket says nobody finished: lost notifications, consumers that died.

On SIGTERM or SIGINT the loop stops pulling, lets running takes finish for up to
``DRAIN_SECONDS``, then cancels the rest: their leases are released, so the sweep of
another consumer (or of this one, restarted) finishes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import structlog

from consumer import metrics
from consumer.backends import make_source, make_storage
from consumer.errors import SourceUnavailable, StorageError
from consumer.keys import KeyLayout, TakeRef
from consumer.retry import (
    JITTER,
    idle_poll_delay,
    jittered,
    source_error_delay,
    take_retry_delay,
)
from consumer.settings import Settings
from consumer.sources import Message, Source
from consumer.storage import Storage
from consumer.sweep import Sweep
from consumer.take import Claim, Outcome, TakeJob
from consumer.webhook import Notifier
from consumer.workers import WorkerPool

log = structlog.get_logger(__name__)


class Service:
    def __init__(self, settings: Settings, storage: Storage, source: Source) -> None:
        self.settings = settings
        self.storage = storage
        self.source = source
        self.keys = KeyLayout(settings.recordings_prefix, settings.marker_name)
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.workers = WorkerPool(settings.concurrency)
        notifier = None
        if settings.webhook_url and settings.webhook_secret is not None:
            notifier = Notifier(settings.webhook_url, settings.webhook_secret.get_secret_value())
        self.job = TakeJob(settings, storage, self.workers, self.keys, self.owner, notifier)
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()  # set when a worker becomes free
        self.deliveries: set[asyncio.Task[None]] = set()  # one per busy worker
        self.running: set[TakeRef] = set()  # takes this consumer is on, from dispatch
        self.takes_handled = 0

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: no new takes; draining", drain_seconds=self.settings.drain_seconds)
            self.stopping.set()
            self.wake.set()

    @property
    def free(self) -> int:
        """Workers with no take: how many messages may be pulled now."""
        return self.settings.concurrency - len(self.deliveries)

    async def run(self) -> None:
        log.info(
            "whisp started",
            source=self.source.name,
            owner=self.owner,
            concurrency=self.settings.concurrency,
            sweep_interval=self.settings.sweep_interval,
        )
        sweeper = None
        if self.settings.sweep_interval > 0:
            sweeper = asyncio.create_task(self._sweep_loop())
        try:
            await self._pull_loop()
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await self._drain()
            await self.source.close()
            await self.storage.close()
            self.workers.close()
            log.info("whisp stopped", takes_handled=self.takes_handled)

    async def _pull_loop(self) -> None:
        empty_polls = failures = 0
        while not self.stopping.is_set():
            if self.free <= 0:
                await self._until_woken()
                continue
            try:
                messages = await self.source.receive(min(self.settings.batch_size, self.free))
            except SourceUnavailable as e:
                failures += 1
                delay = e.retry_after or source_error_delay(failures)
                log.warning("queue unavailable; backing off", error=str(e), delay=delay)
                await self._wait(delay)
                continue
            failures = 0
            if messages:
                empty_polls = 0
                await self._triage(messages)
                backlog = self.source.backlog
                if backlog is None or backlog > len(messages):
                    continue  # more is waiting: pull again at once (for as many as are free)
            else:
                empty_polls += 1
            await self._wait(idle_poll_delay(empty_polls, self.settings.poll_interval_seconds))

    async def _triage(self, messages: list[Message]) -> None:
        """Acknowledge what is not a take to start, in one call; dispatch the rest."""
        settled: list[Message] = []
        for message in messages:
            refs = self._takes_in(message)
            new = [ref for ref in refs if ref not in self.running]
            if new:
                self._dispatch(self._deliver(message, new), new)
                continue
            if refs:
                log.info("marker of a take running here acknowledged", take=str(refs[0]))
            elif message.meta.get("unreadable"):
                log.warning("unreadable message acknowledged", message_id=message.id)
            settled.append(message)
        if settled:
            await self._settle(settled, None)

    def _takes_in(self, message: Message) -> list[TakeRef]:
        """The takes whose markers the message reports written, in this bucket's layout."""
        refs: list[TakeRef] = []
        bucket = self.settings.s3_bucket_name
        for event in message.events:
            if event.bucket is not None and bucket is not None and event.bucket != bucket:
                log.warning("event of another bucket ignored", bucket=event.bucket[:100])
                continue
            ref = self.keys.marker_take(event.key) if event.created else None
            if ref is None and self.keys.split(event.key) is None:
                if event.key.startswith(self.keys.root):
                    log.warning("key outside the layout ignored", key=event.key[:300])
                continue
            if ref is not None and ref not in refs:
                refs.append(ref)
        return refs

    def _dispatch(self, work: Coroutine[Any, Any, None], refs: list[TakeRef]) -> None:
        """Start a delivery on a free worker; its takes count as running from now on."""
        self.running.update(refs)
        task = asyncio.create_task(work)
        self.deliveries.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self.deliveries.discard(task)
            self.running.difference_update(refs)
            self.wake.set()

        task.add_done_callback(done)

    async def _deliver(self, message: Message, refs: list[TakeRef]) -> None:
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
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await self._settle([message], max(delays) if delays else None)
        for claim in claims:
            await self._work(claim)

    async def _sweep_take(self, ref: TakeRef) -> None:
        step = await self._claim(ref, attempts=1)
        if isinstance(step, Claim):
            await self._work(step)

    async def _claim(self, ref: TakeRef, attempts: int) -> Claim | Outcome:
        """The claim phase, counted as running until its work ends (or it claims nothing)."""
        metrics.RUNNING.inc()
        claimed = False
        try:
            step = await self._claim_or_retry(ref, attempts)
            claimed = isinstance(step, Claim)
            if isinstance(step, Outcome):
                metrics.TAKES.labels(step.state).inc()
            return step
        finally:
            if not claimed:
                metrics.RUNNING.dec()

    async def _claim_or_retry(self, ref: TakeRef, attempts: int) -> Claim | Outcome:
        """The take job's claim; a passing failure becomes a retry, never a crash."""
        try:
            return await self.job.claim(ref)
        except StorageError as e:
            log.warning("storage error; will retry", take=str(ref), error=str(e))
            delay = take_retry_delay(attempts, self.settings.retry_delay_seconds)
            return Outcome("retry", str(e), delay)
        except Exception as e:
            log.exception("unexpected error; will retry", take=str(ref))
            delay = take_retry_delay(attempts, self.settings.retry_delay_seconds, unexpected=True)
            return Outcome("retry", f"{type(e).__name__}: {e}", delay)

    async def _work(self, claim: Claim) -> None:
        """The work phase; its message is settled already, so failures only get logged."""
        started = time.monotonic()
        state = "retry"  # what an interrupted take comes to: the sweep takes it up again
        try:
            state = (await self.job.work(claim)).state
        except StorageError as e:
            log.warning("storage error; the sweep will take the take up again", error=str(e))
        except Exception:
            log.exception("unexpected error; the sweep will take the take up again")
        finally:
            self.takes_handled += 1
            metrics.RUNNING.dec()
            metrics.TAKES.labels(state).inc()
            metrics.TAKE_SECONDS.observe(time.monotonic() - started)

    async def _settle(self, messages: list[Message], retry_after: float | None) -> None:
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
                await self.source.extend(message, self.settings.lease_seconds * 3)
            except SourceUnavailable as e:
                log.warning("could not extend the message's visibility", error=str(e))
            await asyncio.sleep(self.settings.lease_seconds)

    async def _sweep_loop(self) -> None:
        sweep = Sweep(self.storage, self.keys)
        interval = self.settings.sweep_interval
        await self._wait(interval * JITTER * random.random())  # consumers started together
        while not self.stopping.is_set():
            try:
                found = await sweep.pending(time.time())
            except StorageError as e:
                log.warning("sweep failed", error=str(e))
                found = []
            random.shuffle(found)  # consumers sweeping together start on different takes
            for ref in found:
                if self.free <= 0 or self.stopping.is_set():
                    break
                if ref not in self.running:
                    log.info("sweep found a take without a final status", take=str(ref))
                    self._dispatch(self._sweep_take(ref), [ref])
            await self._wait(jittered(interval))

    async def _until_woken(self) -> None:
        await self.wake.wait()
        self.wake.clear()

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _drain(self) -> None:
        tasks = list(self.deliveries)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self.settings.drain_seconds)
        for task in late:
            task.cancel()
        if late:
            log.warning("drain timed out; unfinished takes left to the sweep", takes=len(late))
            await asyncio.wait(late, timeout=10)


async def serve(settings: Settings) -> None:
    """``whisp run``: the service on the configured source and store, until signalled."""
    metrics.serve(settings.metrics_port)
    service = Service(settings, make_storage(settings), make_source(settings))
    service.install_signal_handlers()
    await service.run()
