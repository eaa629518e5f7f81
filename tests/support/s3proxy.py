"""A fault-injecting proxy in front of the test S3 server: a consumer pointed at it sees
the real server, except that the requests one rule picks fail and those another picks
are slow (as a flaky network or a struggling store would answer them), or that the
bucket goes away for a while (``Outage``). Every request is recorded, to count what a
consumer did through it (its uploads, its lease renewals).

    with S3Proxy(os.environ["WHISP_TEST_S3"], fail=renewals_of_locks) as proxy:
        env = env_for(..., S3_ENDPOINT_URL=proxy.url)
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from tests.support.served import Served

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "expect"}


@dataclass(frozen=True)
class Seen:
    """One request the proxy passed on (or failed): its method, path and headers."""

    method: str
    path: str
    headers: dict[str, str]
    failed: bool


Rule = Callable[[str, str, dict[str, str]], bool]
# Chaos: what becomes of a request (None: passed on as it is). "503", "500": an error
# answer; "429": SlowDown; "reset": the connection dropped unanswered; "after-commit": passed
# on, then answered 500 (the write happened, the client was told it failed); "slow": late.
# Not among the random ones: "answered-late", passed on at once and answered after the
# delay (the write done, its answer on its way).
CHAOS_MODES = ("503", "500", "429", "reset", "after-commit", "slow")
Chaos = Callable[[str, str, dict[str, str]], str | None]


def random_faults(rate: float, seed: int = 0, modes: tuple[str, ...] = CHAOS_MODES) -> Chaos:
    """Each request, with probability ``rate``, meets one of ``modes`` (seeded: repeatable)."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def chaos(method: str, path: str, headers: dict[str, str]) -> str | None:
        with lock:
            return rng.choice(modes) if rng.random() < rate else None

    return chaos


class Outage:
    """The bucket gone for a while, as a ``Chaos``: from the first request ``begins``
    picks, that request and every later one meet ``mode`` ("reset": the connection
    dropped unanswered; "503", "500": an error answer) for ``seconds``, or until ``end``
    when ``seconds`` is None. It begins once."""

    def __init__(self, begins: Rule, seconds: float | None = None, mode: str = "reset") -> None:
        self.begins = begins
        self.seconds = seconds
        self.mode = mode
        self.began: float | None = None  # time.monotonic() of the first failed request
        self.failed: list[tuple[str, str]] = []  # (method, path) of each request it failed
        self._ended: float | None = None
        self._lock = threading.Lock()

    def __call__(self, method: str, path: str, headers: dict[str, str]) -> str | None:
        with self._lock:
            if self.began is None:
                if not self.begins(method, path, headers):
                    return None
                self.began = time.monotonic()
            if self._over():
                return None
            self.failed.append((method, path))
            return self.mode

    def end(self) -> None:
        """The bucket is back now (an outage without ``seconds`` lasts until this)."""
        with self._lock:
            if self._ended is None:
                self._ended = time.monotonic()

    @property
    def over(self) -> bool:
        """Whether the outage began and is over."""
        with self._lock:
            return self.began is not None and self._over()

    def _over(self) -> bool:
        assert self.began is not None
        timed_out = self.seconds is not None and time.monotonic() >= self.began + self.seconds
        return timed_out or self._ended is not None


def renewals_of_locks(method: str, path: str, headers: dict[str, str]) -> bool:
    """A lease renewal: a conditional PUT (``If-Match``) of a take's ``.lock`` object."""
    return method == "PUT" and path.endswith("/.lock") and "if-match" in headers


def chunk_downloads(method: str, path: str, headers: dict[str, str]) -> bool:
    """A GET of a take's chunk (``video_0.webm``, ``audio_1.webm``...)."""
    name = path.rsplit("/", 1)[-1]
    return method == "GET" and name.startswith(("video_", "audio_", "av_"))


class S3Proxy:
    def __init__(
        self,
        target: str,
        *,
        fail: Rule = lambda *_: False,
        status: int = 503,
        slow: Rule = lambda *_: False,
        delay: float = 0.0,
        chaos: Chaos | None = None,
    ) -> None:
        self.target = target.rstrip("/")
        self.fail = fail
        self.status = status
        self.slow = slow
        self.delay = delay
        self.chaos = chaos
        self.injected: dict[str, int] = {}  # chaos mode -> requests it met
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._served = Served(self._app, "s3-proxy")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._served.port}"

    def requests(self, method: str, path_part: str) -> list[Seen]:
        """The requests of this method whose path holds ``path_part`` (failed ones too)."""
        with self._lock:
            return [s for s in self.seen if s.method == method and path_part in s.path]

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        failed = self.fail(request.method, request.path, headers)
        mode = self.chaos(request.method, request.path, headers) if self.chaos else None
        with self._lock:
            self.seen.append(Seen(request.method, request.path, headers, failed or bool(mode)))
            if mode:
                self.injected[mode] = self.injected.get(mode, 0) + 1
        body = await request.read()
        if self.slow(request.method, request.path, headers) or mode == "slow":
            await asyncio.sleep(self.delay or 1.0)
        if mode == "reset" and request.transport is not None:
            request.transport.abort()
            return web.Response(status=500)  # never sent: the connection is gone
        if mode in ("503", "500", "429"):
            return _error(int(mode))
        if failed:
            return _error(self.status)
        forward = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                self.target + request.path_qs,
                headers=forward,
                data=body,
                allow_redirects=False,
            ) as answer,
        ):
            data = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            if mode == "after-commit":
                return _error(500)
            if mode == "answered-late":
                await asyncio.sleep(self.delay or 1.0)
            return web.Response(status=answer.status, body=data, headers=out)

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    def __enter__(self) -> S3Proxy:
        self._served.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._served.__exit__(*exc)


def _error(status: int) -> web.Response:
    code = {429: "SlowDown", 500: "InternalError"}.get(status, "ServiceUnavailable")
    text = f"<Error><Code>{code}</Code><Message>injected</Message></Error>"
    return web.Response(status=status, text=text, content_type="application/xml")
