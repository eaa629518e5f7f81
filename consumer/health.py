"""Health and metrics over HTTP, served from the event loop (aiohttp) on ``METRICS_PORT``.

- ``/healthz``: the event loop answers. It is served by the loop itself, so a stuck loop
  gets no answer (and misses its systemd watchdog too).
- ``/readyz``: the event source and the bucket answered within ``stale_after`` seconds
  (200), else 503 saying which did not and its last error. The service notes every pull;
  a probe (``consumer.lifecycle``) asks both whenever they have been quiet.
- ``/metrics``: Prometheus text (``consumer.metrics``).
- anything else: 404.

Bound to ``METRICS_HOST`` (127.0.0.1 unless it says otherwise): health and metrics are for
the machine and its scraper, not for the world.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumer import metrics


@dataclass
class Health:
    """When the source and the bucket last answered, and what they last said if they
    failed. Times are ``time.monotonic()``; ``None`` means never."""

    stale_after: float = 90.0
    started: float = field(default_factory=time.monotonic)
    ready: bool = False  # the start-up checks passed
    source_at: float | None = None
    bucket_at: float | None = None
    source_error: str | None = None
    bucket_error: str | None = None

    def pulled(self, source: str, backlog: int | None = None) -> None:
        """A pull succeeded (the queue's backlog, when its API reports one)."""
        self.source_answered()
        metrics.record_pull(True, source, backlog)

    def pull_failed(self, source: str, error: str) -> None:
        self.source_error = error
        metrics.record_pull(False, source)

    def source_answered(self) -> None:
        self.source_at, self.source_error = time.monotonic(), None

    def bucket_answered(self) -> None:
        self.bucket_at, self.bucket_error = time.monotonic(), None

    def quiet(self, now: float, within: float) -> tuple[bool, bool]:
        """Whether the source and the bucket have said nothing for ``within`` seconds."""

        def quiet(at: float | None) -> bool:
            return at is None or now - at > within

        return quiet(self.source_at), quiet(self.bucket_at)

    def readiness(self, now: float | None = None) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic() if now is None else now

        def part(at: float | None, error: str | None) -> dict[str, Any]:
            age = None if at is None else round(now - at, 1)
            ok = age is not None and age <= self.stale_after
            return {"ok": ok, "answered_seconds_ago": age, "error": error}

        source = part(self.source_at, self.source_error)
        bucket = part(self.bucket_at, self.bucket_error)
        ok = self.ready and source["ok"] and bucket["ok"]
        return ok, {"ready": ok, "started": self.ready, "source": source, "bucket": bucket}


class HealthServer:
    """The endpoints above on ``host:port``; ``start`` raises ``OSError`` if the port is
    taken or not allowed."""

    def __init__(self, health: Health, host: str, port: int) -> None:
        self.health = health
        self.host, self.port = host, port
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        uptime = round(time.monotonic() - self.health.started, 1)
        return web.json_response({"status": "ok", "uptime_seconds": uptime})

    async def _readyz(self, request: web.Request) -> web.Response:
        ok, body = self.health.readiness()
        return web.json_response(body, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
