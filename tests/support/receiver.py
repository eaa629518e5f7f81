"""A webhook receiver for tests: a real aiohttp server on 127.0.0.1 (in a thread of its
own, so in-process takes and ``whisp`` subprocesses both reach it) that records every
request and answers from a script."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.served import Served


@dataclass
class Received:
    """One request as the receiver got it, and what ``on_request`` saw at that moment."""

    path: str
    body: bytes
    headers: dict[str, str]
    seen: Any = None


@dataclass
class Receiver:
    """``with Receiver() as hook:`` serves at ``hook.url``; ``answers`` are (status,
    headers) popped one per request (200 once they run out)."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    on_request: Callable[[Received], Any] | None = None
    got: list[Received] = field(default_factory=list)
    _served: Served | None = None

    @property
    def url(self) -> str:
        assert self._served is not None
        return f"http://127.0.0.1:{self._served.port}"

    def __enter__(self) -> Receiver:
        async def handle(request: web.Request) -> web.Response:
            received = Received(request.path, await request.read(), dict(request.headers))
            if self.on_request is not None:
                received.seen = self.on_request(received)
            self.got.append(received)
            status, headers = self.answers.pop(0) if self.answers else (200, {})
            return web.Response(status=status, headers=headers)

        def make_app() -> web.Application:
            app = web.Application()
            app.router.add_post("/{tail:.*}", handle)
            return app

        self._served = Served(make_app, "webhook-receiver").__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._served is not None:
            self._served.__exit__(*exc)
