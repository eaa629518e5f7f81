"""An aiohttp application served on 127.0.0.1 from a thread of its own, so that a test, and
the ``whisp run`` subprocesses it starts, can talk to it while the test inspects it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web


class Served:
    """``with Served(make_app, "name") as served:`` serves on ``served.port`` until the end."""

    def __init__(self, make_app: Callable[[], web.Application], name: str) -> None:
        self.make_app = make_app
        self.name = name
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Served:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            runner = web.AppRunner(self.make_app(), access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name=self.name, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
