"""A Cloudflare Queues emulator for tests: the HTTP pull API on 127.0.0.1, as strict as
the real one where Cloudflare documents it (``shared/reference/cloudflare.md``; the
Queues API reference, pull consumers, limits and error codes pages).

- Bearer token; ``POST .../messages`` and ``/messages/batch`` (publish), ``/messages/pull``
  (``batch_size`` 1-100, ``visibility_timeout_ms`` up to 12 h), ``/messages/ack``
  (``acks``, ``retries`` with ``delay_seconds`` up to 12 h); ``GET .../consumers``.
- Bodies that are not JSON: 10208; bodies that do not match the schema (unknown fields,
  wrong types, values out of range): 10207; an unknown queue: 10104 (HTTP 404); a paused
  queue's pull: 10252 (HTTP 429, with ``Retry-After``); a queue with no HTTP pull consumer
  refuses pulls (Cloudflare does not document that answer; a 400 here, so that a client
  cannot mistake it for an empty queue).
- Pull results carry ``message_backlog_count`` and ``metadata.metrics`` (backlog count
  and bytes, the oldest message's time); messages carry only the metadata keys Cloudflare
  sends (``CF-Content-Type``, ``CF-sourceMessageSource``). ``json`` bodies are base64.
- A message's visibility timeout running out delivers it again with ``attempts`` + 1;
  after ``max_retries`` deliveries it goes to the dead-letter queue (or is deleted). A
  late ack with an expired lease still counts; an ack's answer is ``ackCount``,
  ``retryCount`` and ``warnings`` (a map by lease id).

The rules live in ``cfqueue_api``; this module serves them, in a thread of its own
(``with QueueEmulator() as q:``), so a ``whisp run`` subprocess can talk to it while the
test inspects it; faults are injected on demand.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.support.cfqueue_api import MALFORMED, NOT_FOUND, ApiError, Queue, Queues
from tests.support.served import Served

ACCOUNT = "0123456789abcdef0123456789abcdef"
TOKEN = "test-token-" + "x" * 20


@dataclass
class Fault:
    path: str  # "pull", "ack", "publish", "consumers" or "*"
    status: int
    code: int
    times: int = 1
    message: str = "injected fault"


class QueueEmulator:
    def __init__(
        self,
        *,
        token: str = TOKEN,
        account: str = ACCOUNT,
        plain_json_bodies: bool = False,
        legacy_list_result: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.account = account
        self.api = Queues(
            plain_json_bodies=plain_json_bodies, legacy_list_result=legacy_list_result, clock=clock
        )
        self.faults: list[Fault] = []
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._served = Served(self._app, "cf-queue-emulator")

    # ----- set-up and inspection, from the test's thread -----

    def create_queue(
        self,
        queue_id: str,
        *,
        max_retries: int = 3,
        dead_letter: str | None = None,
        consumer: str | None = "http_pull",
    ) -> Queue:
        with self._lock:
            if dead_letter is not None and dead_letter not in self.api.queues:
                self.api.queues[dead_letter] = Queue(dead_letter)
            queue = Queue(queue_id, max_retries, dead_letter, consumer)
            self.api.queues[queue_id] = queue
            return queue

    def pause(self, queue_id: str, paused: bool = True) -> None:
        with self._lock:
            self.api.queues[queue_id].paused = paused

    def send(self, queue_id: str, body: Any, content_type: str = "json", delay: float = 0) -> str:
        with self._lock:
            return self.api.send(self.api.queues[queue_id], body, content_type, delay)

    def inject(
        self, path: str, status: int, code: int, times: int = 1, message: str = "injected fault"
    ) -> None:
        """The next ``times`` requests to ``path`` answer ``status`` with error ``code`` (and
        ``message``: an API that echoes what it was sent, a token say)."""
        with self._lock:
            self.faults.append(Fault(path, status, code, times, message))

    def backlog(self, queue_id: str) -> int:
        """Unacknowledged messages (in flight, delayed or waiting), as Cloudflare counts."""
        with self._lock:
            self.api.expire(self.api.queues[queue_id])
            return len(self.api.queues[queue_id].messages)

    def acked(self, queue_id: str) -> list[str]:
        with self._lock:
            return list(self.api.queues[queue_id].acked)

    def bodies(self, queue_id: str) -> list[Any]:
        with self._lock:
            return [m.body for m in self.api.queues[queue_id].messages.values()]

    @property
    def queues(self) -> dict[str, Queue]:
        """Every queue, to inspect (``retried``, ``pulls``) under no lock: read, don't change."""
        return self.api.queues

    @property
    def port(self) -> int:
        return self._served.port

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/client/v4"

    # ----- the server -----

    def _app(self) -> web.Application:
        app = web.Application()
        base = "/client/v4/accounts/{account}/queues/{queue}"
        app.router.add_post(base + "/messages{action:(/pull|/ack|/batch)?}", self._handle)
        app.router.add_get(base + "/{action:consumers}", self._handle)
        return app

    def __enter__(self) -> QueueEmulator:
        self._served.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._served.__exit__(*exc)

    @staticmethod
    def _error(error: ApiError) -> web.Response:
        body = {"success": False, "errors": [{"code": error.code, "message": str(error)}]}
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
        return web.json_response({**body, "messages": []}, status=error.status, headers=headers)

    async def _handle(self, request: web.Request) -> web.Response:
        action = request.match_info["action"].strip("/") or "publish"
        raw = await request.read()
        try:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(403, 10000, "Authentication error")
            try:
                payload = json.loads(raw) if raw else {}
            except ValueError:
                raise ApiError(400, MALFORMED, "Request body is not valid JSON") from None
            with self._lock:
                self.requests.append(action)
                self._fault(action)
                if request.match_info["account"] != self.account:
                    raise ApiError(403, 10000, "Authentication error")
                queue = self.api.queues.get(request.match_info["queue"])
                if queue is None:
                    raise ApiError(404, NOT_FOUND, "Queue does not exist")
                self.api.expire(queue)
                result = getattr(self.api, action)(queue, payload)
        except ApiError as e:
            return self._error(e)
        return web.json_response({"success": True, "errors": [], "messages": [], "result": result})

    def _fault(self, action: str) -> None:
        for fault in self.faults:
            if fault.times > 0 and fault.path in (action, "*"):
                fault.times -= 1
                retry_after = 1 if fault.status == 429 else None
                raise ApiError(fault.status, fault.code, fault.message, retry_after)


def r2_event(
    key: str,
    size: int = 1,
    etag: str = "0" * 32,
    action: str = "PutObject",
    bucket: str = "whisp-test",
) -> dict[str, Any]:
    """An R2 event notification body for ``key``, as R2 sends it to a queue."""
    return {
        "account": ACCOUNT,
        "action": action,
        "bucket": bucket,
        "object": {"key": key, "size": size, "eTag": etag},
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
    }
