"""A fault-injecting proxy in front of the test S3 server: a consumer pointed at it sees
the real server, except that the requests one rule picks fail and those another picks
are slow (as a flaky network or a struggling store would answer them). Every request is
recorded, to count what a consumer did through it (its uploads, its lease renewals).

    with S3Proxy(os.environ["WHISP_TEST_S3"], fail=renewals_of_locks) as proxy:
        env = env_for(..., S3_ENDPOINT_URL=proxy.url)
"""

from __future__ import annotations

import asyncio
import threading
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
    ) -> None:
        self.target = target.rstrip("/")
        self.fail = fail
        self.status = status
        self.slow = slow
        self.delay = delay
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
        with self._lock:
            self.seen.append(Seen(request.method, request.path, headers, failed))
        body = await request.read()
        if self.slow(request.method, request.path, headers):
            await asyncio.sleep(self.delay)
        if failed:
            text = "<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"
            return web.Response(status=self.status, text=text, content_type="application/xml")
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
