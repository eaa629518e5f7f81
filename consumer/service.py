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
- A take being recorded (its chunks heard of, or found by the sweep) is followed while a
  worker is free (``consumer.follow``, ``consumer.followers``): a take that has ended
  takes the worker of the newest follower when none is free, so a marker is pulled even
  while followers hold every worker.

On SIGTERM or SIGINT the loop stops pulling, lets running takes finish for up to
``DRAIN_SECONDS``, then cancels the rest: their leases are released, so the sweep of
another consumer (or of this one, restarted) finishes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import Coroutine
from typing import Any

import structlog

from consumer import __version__, background, logs, workdirs
from consumer.delivery import Delivery
from consumer.errors import SourceUnavailable, StorageError
from consumer.follow import Follower
from consumer.followers import Followers
from consumer.health import Health
from consumer.heard import heard
from consumer.keys import KeyLayout, TakeRef
from consumer.retry import (
    first_sweep_delay,
    idle_poll_delay,
    jittered,
    source_error_delay,
)
from consumer.settings import Settings
from consumer.sources import Message, Source
from consumer.storage import Storage
from consumer.sweep import Sweep
from consumer.take import TakeJob
from consumer.webhook import Notifier
from consumer.workers import WorkerPool

log = structlog.get_logger(__name__)


class Service:
    def __init__(
        self, settings: Settings, storage: Storage, source: Source, health: Health | None = None
    ) -> None:
        self.settings = settings
        self.health = health or Health()
        self.storage = storage
        self.source = source
        self.keys = KeyLayout(settings.recordings_prefix, settings.marker_name)
        self.owner = workdirs.owner_name()
        self.workers = WorkerPool(settings.concurrency)
        self.followers = Followers(settings)
        notifier = Notifier.from_settings(settings)
        self.job = TakeJob(
            settings,
            storage,
            self.workers,
            self.keys,
            self.owner,
            notifier,
            self.followers.worker_slot,
        )
        self.delivery = Delivery(self.job, source, settings)
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()  # set when a worker becomes free
        self.deliveries: set[asyncio.Task[None]] = set()  # one per busy worker
        self.running: set[TakeRef] = set()  # takes this consumer is on, from dispatch

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: no new takes; draining", drain_seconds=self.settings.drain_seconds)
            self.stopping.set()
            self.wake.set()
            self.followers.stop()  # takes still being recorded are not drained

    @property
    def takes_handled(self) -> int:
        return self.delivery.takes_handled

    @property
    def free(self) -> int:
        """Workers with no take."""
        return self.settings.concurrency - len(self.deliveries)

    @property
    def pullable(self) -> int:
        """How many messages may be pulled now: the free workers, and those of takes
        followed while they are recorded, which a take that has ended may have."""
        return self.free + len(self.followers.preemptible())

    async def run(self) -> None:
        log.info(
            "whisp started",
            source=self.source.name,
            owner=self.owner,
            concurrency=self.settings.concurrency,
            sweep_interval=self.settings.sweep_interval,
            version=__version__,
            model=self.settings.whisper_model,
            stage="startup",
        )
        sweeper = None
        if self.settings.sweep_interval > 0:
            sweeper = asyncio.create_task(self._sweep_loop(), name="sweep")
        try:
            await self._pull_loop()
        finally:
            await background.stop(sweeper)
            await self._drain()
            await self.source.close()
            await self.storage.close()
            self.workers.close()
            log.info("whisp stopped", processed=self.takes_handled)

    async def _pull_loop(self) -> None:
        empty_polls = failures = 0
        while not self.stopping.is_set():
            if self.pullable <= 0:
                await self._until_woken()
                continue
            try:
                messages = await self._receive(min(self.settings.batch_size, self.pullable))
            except SourceUnavailable as e:
                self.health.pull_failed(self.source.name, str(e))
                failures += 1
                delay = e.retry_after or source_error_delay(failures)
                log.warning("queue unavailable; backing off", error=str(e), delay=delay)
                await self._wait(delay)
                continue
            failures = 0
            self.health.pulled(self.source.name, self.source.backlog)
            if messages:
                empty_polls = 0
                await self._triage(messages)
                backlog = self.source.backlog
                if backlog is None or backlog > len(messages):
                    continue  # more is waiting: pull again at once (for as many as are free)
            else:
                empty_polls += 1
            await self._wait(idle_poll_delay(empty_polls, self.settings.poll_interval_seconds))

    async def _receive(self, count: int) -> list[Message]:
        """The source's receive, cancelled when the service is told to stop: an SQS long
        poll would otherwise hold an idle consumer's exit for up to 20 s."""
        try:
            return await background.until_set(self.stopping, self.source.receive(count))
        except background.Interrupted:
            return []

    async def _triage(self, messages: list[Message]) -> None:
        """Acknowledge what is not a take to start, in one call; dispatch the rest."""
        settled: list[Message] = []
        for message in messages:
            found = heard(message, self.keys, self.settings.s3_bucket_name)
            for ref in found.ended:
                if (follower := self.followers.get(ref)) is not None:
                    follower.marker_event()  # it makes the take: told, it looks at once
            new = [ref for ref in found.ended if ref not in self.running]
            if new:
                self._dispatch(self.delivery.message(message, new), new)
                continue
            if found.ended:
                log.info(
                    "marker of a take running here acknowledged",
                    **logs.take_fields(found.ended[0]),
                    stage="pull",
                )
            elif message.meta.get("unreadable"):
                log.warning("unreadable message acknowledged", message_id=message.id)
            for ref in found.recording:  # its follower looks at once, or one is started
                if (follower := self.followers.get(ref)) is not None:
                    follower.wake.set()
                else:
                    self._follow(ref)
            settled.append(message)
        if settled:
            await self.delivery.settle(settled, None)

    def _follow(self, ref: TakeRef) -> None:
        """Follow the take while it is recorded (``consumer.follow``), when a worker is
        free and nobody here is on it (``Followers.may_follow``)."""
        if (
            self.free <= 0
            or self.stopping.is_set()
            or ref in self.running
            or not self.followers.may_follow(ref)
        ):
            return
        follower = Follower(self.job, ref)

        async def follow() -> None:
            gave_up = True
            try:
                gave_up = await self.delivery.follow(follower) is not None
            finally:
                self.followers.ended(ref, gave_up)

        self.followers.started(follower, self._dispatch(follow(), [ref]))

    def _dispatch(self, work: Coroutine[Any, Any, None], refs: list[TakeRef]) -> asyncio.Task[None]:
        """Start a delivery on a free worker; its takes count as running from now on."""
        self.running.update(refs)
        task = asyncio.create_task(work)
        self.deliveries.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self.deliveries.discard(task)
            self.running.difference_update(refs)
            self.wake.set()

        task.add_done_callback(done)
        return task

    async def _sweep_loop(self) -> None:
        sweep = Sweep(
            self.storage,
            self.keys,
            lease_seconds=self.settings.lease_seconds,
            recorded_within=self.settings.chunk_wait_seconds if self.settings.follow_takes else 0,
        )
        interval = self.settings.sweep_interval
        await self._wait(first_sweep_delay(interval))
        while not self.stopping.is_set():
            with background.survived("sweep", stage="sweep"):  # any error: the next round
                await self._sweep_once(sweep)
            await self._wait(jittered(interval))

    async def _sweep_once(self, sweep: Sweep) -> None:
        try:
            found = await sweep.scan(time.time())
        except StorageError as e:
            log.warning("sweep failed", error=str(e))
            return
        pending = found.pending
        random.shuffle(pending)  # consumers sweeping together start on different takes
        for ref in pending:
            if self.pullable <= 0 or self.stopping.is_set():
                break
            if ref not in self.running:
                log.info(
                    "sweep found a take without a final status",
                    **logs.take_fields(ref),
                    stage="sweep",
                )
                self._dispatch(self.delivery.swept(ref), [ref])
        recording = found.recording
        random.shuffle(recording)
        for ref in recording:  # takes being recorded that nobody follows: when idle
            self._follow(ref)

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
        if not late:
            return
        # Give up on the rest: stop their worker processes now (an encode would run to its
        # end otherwise), record each attempt as interrupted, release its lease and make
        # a message still held visible again, so another consumer takes over at once.
        log.warning("drain timed out; stopping the workers", takes=len(late))
        for task in late:
            task.cancel()
        self.workers.close()
        await asyncio.wait(late, timeout=10)
        log.warning("unfinished takes left to the sweep", takes=len(late))
