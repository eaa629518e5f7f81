"""The loop: pull, dispatch with bounded concurrency, ack or retry, drain on SIGTERM.

Delivery is at least once: a marker may arrive twice, on two machines at once, and a
take may run more than once. The take job makes that safe (lease, fingerprint); the loop
only moves messages. Messages that are not markers are acknowledged at once, in batches.
On SIGTERM or SIGINT the loop stops pulling, lets running takes finish for up to
``DRAIN_SECONDS``, then cancels the rest: their leases are released and their messages
left unacknowledged, so they come back to another consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import structlog

from consumer import __version__, logs, metrics
from consumer.errors import SourceUnavailable, StorageError
from consumer.health import Health
from consumer.keys import KeyLayout, TakeRef
from consumer.retry import idle_poll_delay, source_error_delay, take_retry_delay
from consumer.settings import Settings
from consumer.sources import Message, Source
from consumer.storage import Storage
from consumer.sweep import Sweep
from consumer.take import Outcome, TakeJob
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
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.workers = WorkerPool(settings.concurrency)
        notifier = None
        if settings.webhook_url and settings.webhook_secret is not None:
            notifier = Notifier(settings.webhook_url, settings.webhook_secret.get_secret_value())
        self.job = TakeJob(settings, storage, self.workers, self.keys, self.owner, notifier)
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.active: set[TakeRef] = set()
        self.pending: list[tuple[Message, list[TakeRef]]] = []
        self.takes_handled = 0

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: no new takes; draining", drain_seconds=self.settings.drain_seconds)
            self.stopping.set()

    async def run(self) -> None:
        log.info(
            "whisp started",
            source=self.source.name,
            owner=self.owner,
            concurrency=self.settings.concurrency,
            version=__version__,
            model=self.settings.whisper_model,
            stage="startup",
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
            log.info("whisp stopped", processed=self.takes_handled)

    @property
    def free(self) -> int:
        return self.settings.concurrency - len(self.tasks)

    async def _pull_loop(self) -> None:
        empty_polls = failures = 0
        while not self.stopping.is_set():
            self._dispatch()
            if self.pending and self.free <= 0:
                await self._wait(1.0)
                continue
            try:
                messages = await self.source.receive(self.settings.batch_size)
            except SourceUnavailable as e:
                self.health.pull_failed(self.source.name, str(e))
                failures += 1
                delay = e.retry_after or source_error_delay(failures)
                log.warning("queue unavailable; backing off", error=str(e), delay=delay)
                await self._wait(delay)
                continue
            failures = 0
            self.health.pulled(self.source.name, getattr(self.source, "backlog", None))
            if not messages:
                empty_polls += 1
                await self._wait(idle_poll_delay(empty_polls, self.settings.poll_interval_seconds))
                continue
            empty_polls = 0
            await self._triage(messages)

    async def _triage(self, messages: list[Message]) -> None:
        """Acknowledge what is not a marker at once; queue markers for the workers."""
        done: list[Message] = []
        for message in messages:
            refs: list[TakeRef] = []
            for event in message.events:
                ref = self.keys.marker_take(event.key) if event.created else None
                if ref is None and self.keys.split(event.key) is None:
                    if not event.key.startswith(self.keys.root):
                        continue
                    log.warning(
                        "key outside the layout ignored",
                        key=event.key[:300],
                        **logs.key_fields(event.key, self.keys.recordings),
                    )
                if ref is not None and ref not in refs:
                    refs.append(ref)
            if message.meta.get("unreadable"):
                log.warning("unreadable message acknowledged", message_id=message.id)
            if refs:
                self.pending.append((message, refs))
            else:
                done.append(message)
        if done:
            try:
                await self.source.ack(done)
                metrics.MESSAGES.labels("acked").inc(len(done))
            except SourceUnavailable as e:
                log.warning("ack failed; messages will come back", error=str(e))
        self._dispatch()

    def _dispatch(self) -> None:
        while self.pending and self.free > 0 and not self.stopping.is_set():
            message, refs = self.pending.pop(0)
            if any(r in self.active for r in refs):
                # This consumer is already on the take: the duplicate waits for the lease.
                self._spawn(self._retry_later(message, self.settings.lease_seconds))
            else:
                self._spawn(self._handle(message, refs))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _retry_later(self, message: Message, delay: float) -> None:
        with contextlib.suppress(SourceUnavailable):
            await self.source.retry(message, delay)

    async def _keep_hidden(self, message: Message) -> None:
        """Keep the message invisible while its take runs (SQS; a no-op for pull queues)."""
        while True:
            try:
                await self.source.extend(message, self.settings.lease_seconds * 3)
            except SourceUnavailable as e:
                log.warning("could not extend the message's visibility", error=str(e))
            await asyncio.sleep(self.settings.lease_seconds)

    async def _handle(self, message: Message, refs: list[TakeRef]) -> None:
        outcomes: list[Outcome] = []
        keeper = asyncio.create_task(self._keep_hidden(message))
        try:
            for ref in refs:
                outcomes.append(await self.run_take(ref, message.attempts))
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        retry = [o for o in outcomes if not o.ack]
        try:
            if retry:
                await self.source.retry(message, max(o.delay for o in retry))
                metrics.MESSAGES.labels("retried").inc()
            else:
                await self.source.ack([message])
                metrics.MESSAGES.labels("acked").inc()
        except SourceUnavailable as e:
            log.warning("could not settle the message; it will come back", error=str(e))

    async def run_take(self, ref: TakeRef, attempts: int = 1) -> Outcome:
        """Run the take job; a passing failure becomes a retry, never a crash."""
        self.active.add(ref)
        metrics.RUNNING.inc()
        structlog.contextvars.bind_contextvars(**logs.take_fields(ref), stage="start")
        started = time.monotonic()
        state = "retry"  # what a cancelled take comes to: its message comes back
        try:
            outcome = await self._outcome(ref, attempts)
            state = outcome.state
            return outcome
        finally:
            self.active.discard(ref)
            self.takes_handled += 1
            metrics.RUNNING.dec()
            metrics.record_take(state, time.monotonic() - started)
            structlog.contextvars.unbind_contextvars(*logs.TAKE_FIELDS, "stage")

    async def _outcome(self, ref: TakeRef, attempts: int) -> Outcome:
        try:
            return await self.job.run(ref)
        except StorageError as e:
            log.warning("storage error; will retry", error=str(e))
            delay = take_retry_delay(attempts, self.settings.retry_delay_seconds)
            return Outcome("retry", str(e), delay)
        except Exception as e:
            log.exception("unexpected error; will retry")
            delay = take_retry_delay(attempts, self.settings.retry_delay_seconds, unexpected=True)
            return Outcome("retry", f"{type(e).__name__}: {e}", delay)

    async def _sweep_loop(self) -> None:
        sweep = Sweep(self.storage, self.keys, stale_after=self.settings.lease_seconds * 2)
        while not self.stopping.is_set():
            try:
                for ref in await sweep.pending(time.time()):
                    if ref in self.active or self.free <= 0 or self.stopping.is_set():
                        continue
                    log.info(
                        "sweep found a take without a final status",
                        **logs.take_fields(ref),
                        stage="sweep",
                    )
                    self._spawn(self._swept(ref))
            except StorageError as e:
                log.warning("sweep failed", error=str(e))
            await self._wait(self.settings.sweep_interval)

    async def _swept(self, ref: TakeRef) -> None:
        await self.run_take(ref)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _drain(self) -> None:
        tasks = list(self.tasks)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self.settings.drain_seconds)
        for task in late:
            task.cancel()
        if late:
            log.warning("drain timed out; unfinished takes left for redelivery", takes=len(late))
            await asyncio.wait(late, timeout=10)
