"""``whisp run`` in three phases, as uvicorn's server names them: start-up, main loop,
shutdown, each telling systemd (``consumer.systemd``) where it stands.

- Start-up: the self-check (``consumer.selfcheck``): folders, encoder and model, the
  health port, then the bucket and the queue. A failure is one line per problem and an
  exit status (2: the set-up; 1: a remote that did not answer); nothing is pulled and no
  take is touched. Then ``READY=1``.
- Main loop: ``Service.run``; ``WATCHDOG=1`` from the event loop at half of
  ``WatchdogSec`` (a stuck loop stops sending, and systemd restarts the service), and a
  probe that asks the queue and the bucket whenever they have been quiet, for ``/readyz``.
- Shutdown: on SIGTERM or SIGINT, ``STOPPING=1`` and a ``STATUS=`` line per second while
  the running takes drain; a second signal exits at once (the takes' leases expire and
  their messages come back).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import structlog

from consumer import background, systemd, workdirs
from consumer.backends import make_source, make_storage
from consumer.health import Health, HealthServer
from consumer.selfcheck import (
    Check,
    check_bucket,
    check_folders,
    check_pipeline,
    check_queue,
    exit_status,
    probe_bucket,
)
from consumer.service import Service
from consumer.settings import Settings

log = structlog.get_logger(__name__)


async def serve(settings: Settings) -> int:
    """``whisp run``: the service until signalled; returns the process's exit status."""
    health = Health()
    checks = check_folders(settings) + await check_pipeline(settings)
    server = None
    if settings.metrics_port:
        server = HealthServer(health, settings.metrics_host, settings.metrics_port)
        try:
            await server.start()
        except OSError as e:
            where = f"{settings.metrics_host}:{settings.metrics_port}"
            checks.append(Check("metrics", f"METRICS_PORT {where}: {e.strerror or e}", ok=False))
            server = None
    try:
        if not _passed(checks):
            return exit_status(checks)
        storage, source = make_storage(settings), make_source(settings)
        remote = [await check_bucket(settings, storage), await check_queue(settings, source)]
        if not _passed(remote):
            await source.close()
            await storage.close()
            return exit_status(remote)
        health.source_answered()
        health.bucket_answered()
        service = Service(settings, storage, source, health)
        # Interrupted attempts' work folders (a kill, a drain that ran out): see workdirs.
        await asyncio.to_thread(workdirs.remove_stale, settings.work_dir, service.owner)
        await Lifecycle(settings, service, health).run()
        return 0
    finally:
        if server is not None:
            await server.stop()


def _passed(checks: list[Check]) -> bool:
    for check in checks:
        if not check.ok:
            log.error("cannot start", check=check.name, error=check.detail, stage="startup")
    return all(c.ok for c in checks)


class Lifecycle:
    def __init__(self, settings: Settings, service: Service, health: Health) -> None:
        self.settings = settings
        self.service = service
        self.health = health
        self.drain_deadline = 0.0
        self._drain_report: asyncio.Task[None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.signalled)
        self.health.ready = True
        systemd.notify(
            "READY=1",
            f"STATUS=running: {self.service.source.name}, "
            f"{self.settings.concurrency} take(s) at once",
        )
        background = [asyncio.create_task(self._probe())]
        interval = systemd.watchdog_interval()
        if interval is not None:
            background.append(asyncio.create_task(self._watchdog(interval)))
        try:
            await self.service.run()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            systemd.notify("STATUS=stopped")

    def signalled(self) -> None:
        if self.service.stopping.is_set():
            log.warning("second signal: exiting now; running takes come back to the queue")
            os._exit(1)
        self.health.ready = False
        self.drain_deadline = time.monotonic() + self.settings.drain_seconds
        systemd.notify("STOPPING=1", self._draining())
        self.service.stop()
        self._drain_report = asyncio.get_running_loop().create_task(self._report_drain())

    def _draining(self) -> str:
        left = max(0.0, self.drain_deadline - time.monotonic())
        return f"STATUS=draining: {len(self.service.deliveries)} take(s) running, {left:.0f} s left"

    async def _report_drain(self) -> None:
        while self.service.deliveries:
            await asyncio.sleep(1.0)
            with background.survived("drain report"):
                systemd.notify(self._draining())

    async def _watchdog(self, interval: float) -> None:
        """Sent from the event loop: if the loop stops turning, systemd hears nothing.
        systemd arms the watchdog once start-up is over (READY=1); until then
        TimeoutStartSec is the limit."""
        while True:
            with background.survived("watchdog"):
                systemd.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def _probe(self) -> None:
        """Ask the queue and the bucket whenever they have been quiet, for ``/readyz``."""
        every = self.health.stale_after / 3
        while True:
            await asyncio.sleep(every)
            with background.survived("probe"):
                await self._probe_once(every)

    async def _probe_once(self, every: float) -> None:
        source_quiet, _ = self.health.quiet(time.monotonic(), every)
        if source_quiet:
            try:
                await asyncio.wait_for(self.service.source.check(), every)
                self.health.source_answered()
            except Exception as e:
                self.health.source_error = str(e) or type(e).__name__
        try:
            await asyncio.wait_for(probe_bucket(self.settings, self.service.storage), every)
            self.health.bucket_answered()
        except Exception as e:
            self.health.bucket_error = str(e) or type(e).__name__
