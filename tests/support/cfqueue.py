"""A Cloudflare Queues emulator for tests: the HTTP pull API on 127.0.0.1.

Follows the wire facts whisp relies on: bearer token, ``/messages`` publish and batch,
``/messages/pull`` with ``batch_size`` and ``visibility_timeout_ms``, ``/messages/ack``
with ``acks`` and ``retries`` (``delay_seconds``), visibility timeout and redelivery with
``attempts`` + 1, ``max_retries`` then a dead-letter queue, base64 (or plain) ``json``
bodies, Cloudflare's error envelope, and faults injected on demand (429s, 5xx).

It runs in a thread of its own (``with QueueEmulator() as q:``), so a ``whisp run``
subprocess can talk to it while the test inspects it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ACCOUNT = "0123456789abcdef0123456789abcdef"
TOKEN = "test-token-" + "x" * 20


@dataclass
class QueuedMessage:
    id: str
    body: Any
    content_type: str
    timestamp_ms: int
    attempts: int = 0
    visible_at: float = 0.0
    lease_id: str | None = None
    leases: list[str] = field(default_factory=list)


@dataclass
class Queue:
    queue_id: str
    max_retries: int = 3
    dead_letter: str | None = None
    messages: dict[str, QueuedMessage] = field(default_factory=dict)
    acked: list[str] = field(default_factory=list)
    retried: list[tuple[str, int]] = field(default_factory=list)
    pulls: int = 0


@dataclass
class Fault:
    path: str  # "pull", "ack", "publish" or "*"
    status: int
    code: int
    times: int = 1


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
        self.plain_json_bodies = plain_json_bodies
        self.legacy_list_result = legacy_list_result
        self.clock = clock
        self.queues: dict[str, Queue] = {}
        self.faults: list[Fault] = []
        self.requests: list[str] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ----- set-up and inspection, from the test's thread -----

    def create_queue(
        self, queue_id: str, *, max_retries: int = 3, dead_letter: str | None = None
    ) -> Queue:
        with self._lock:
            if dead_letter is not None and dead_letter not in self.queues:
                self.queues[dead_letter] = Queue(dead_letter)
            queue = Queue(queue_id, max_retries, dead_letter)
            self.queues[queue_id] = queue
            return queue

    def send(self, queue_id: str, body: Any, content_type: str = "json", delay: float = 0) -> str:
        with self._lock:
            return self._send(self.queues[queue_id], body, content_type, delay)

    def inject(self, path: str, status: int, code: int, times: int = 1) -> None:
        """The next ``times`` requests to ``path`` answer ``status`` with error ``code``."""
        with self._lock:
            self.faults.append(Fault(path, status, code, times))

    def backlog(self, queue_id: str) -> int:
        with self._lock:
            return len(self.queues[queue_id].messages)

    def acked(self, queue_id: str) -> list[str]:
        with self._lock:
            return list(self.queues[queue_id].acked)

    def bodies(self, queue_id: str) -> list[Any]:
        with self._lock:
            return [m.body for m in self.queues[queue_id].messages.values()]

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/client/v4"

    # ----- the server -----

    def __enter__(self) -> QueueEmulator:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post(
                "/client/v4/accounts/{account}/queues/{queue}/messages{action:(/pull|/ack|/batch)?}",
                self._handle,
            )
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="cf-queue-emulator", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        body = {"success": False, "errors": [{"code": code, "message": message}], "messages": []}
        return web.json_response(body, status=status)

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"success": True, "errors": [], "messages": [], "result": result})

    async def _handle(self, request: web.Request) -> web.Response:
        action = request.match_info["action"].strip("/") or "publish"
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(403, 10000, "Authentication error")
        try:
            payload = await request.json() if await request.read() else {}
        except ValueError:
            return self._error(400, 10207, "Invalid JSON body")
        if not isinstance(payload, dict):
            return self._error(400, 10208, "Request body must be an object")
        with self._lock:
            self.requests.append(action)
            for fault in self.faults:
                if fault.times > 0 and fault.path in (action, "*"):
                    fault.times -= 1
                    return self._error(fault.status, fault.code, "injected fault")
            if request.match_info["account"] != self.account:
                return self._error(403, 10000, "Authentication error")
            queue = self.queues.get(request.match_info["queue"])
            if queue is None:
                return self._error(404, 10104, "Queue does not exist")
            self._expire(queue)
            if action == "pull":
                return self._pull(queue, payload)
            if action == "ack":
                return self._ack(queue, payload)
            if action == "batch":
                for item in payload.get("messages", []):
                    delay = item.get("delay_seconds", payload.get("delay_seconds", 0))
                    self._send(queue, item.get("body"), item.get("content_type", "json"), delay)
                return self._ok(None)
            self._send(
                queue,
                payload.get("body"),
                payload.get("content_type", "json"),
                payload.get("delay_seconds", 0),
            )
            return self._ok(None)

    # ----- queue semantics, under the lock -----

    def _send(self, queue: Queue, body: Any, content_type: str, delay: float) -> str:
        message_id = f"{next(self._ids):032x}"
        queue.messages[message_id] = QueuedMessage(
            id=message_id,
            body=body,
            content_type=content_type,
            timestamp_ms=int(time.time() * 1000),
            visible_at=self.clock() + float(delay),
        )
        return message_id

    def _expire(self, queue: Queue) -> None:
        """Messages whose visibility timeout ran out are delivered again, or dead-lettered."""
        now = self.clock()
        for message in list(queue.messages.values()):
            if message.lease_id is not None and message.visible_at <= now:
                message.lease_id = None
                self._maybe_dead_letter(queue, message)

    def _maybe_dead_letter(self, queue: Queue, message: QueuedMessage) -> None:
        if message.attempts >= queue.max_retries:
            del queue.messages[message.id]
            if queue.dead_letter is not None:
                dlq = self.queues[queue.dead_letter]
                message.attempts = 0
                message.visible_at = self.clock()
                dlq.messages[message.id] = message

    def _encode(self, message: QueuedMessage) -> Any:
        if message.content_type == "text":
            return message.body
        if message.content_type == "json":
            text = json.dumps(message.body)
            return text if self.plain_json_bodies else base64.b64encode(text.encode()).decode()
        raw = message.body if isinstance(message.body, bytes) else str(message.body).encode()
        return base64.b64encode(raw).decode()

    def _pull(self, queue: Queue, payload: dict[str, Any]) -> web.Response:
        size = payload.get("batch_size", 5)
        timeout_ms = payload.get("visibility_timeout_ms", 30_000)
        if not isinstance(size, int) or not 1 <= size <= 100:
            return self._error(400, 10208, "batch_size must be between 1 and 100")
        if not isinstance(timeout_ms, int) or not 0 < timeout_ms <= 43_200_000:
            return self._error(400, 10208, "visibility_timeout_ms out of range")
        queue.pulls += 1
        now = self.clock()
        out: list[dict[str, Any]] = []
        for message in queue.messages.values():
            if len(out) >= size:
                break
            if message.lease_id is None and message.visible_at <= now:
                message.attempts += 1
                message.lease_id = secrets.token_urlsafe(24)
                message.leases.append(message.lease_id)
                message.visible_at = now + timeout_ms / 1000
                out.append(
                    {
                        "id": message.id,
                        "body": self._encode(message),
                        "timestamp_ms": message.timestamp_ms,
                        "attempts": message.attempts,
                        "lease_id": message.lease_id,
                        "metadata": {
                            "CF-sourceMessageSource": "r2",
                            "CF-Content-Type": message.content_type,
                        },
                    }
                )
        if self.legacy_list_result:
            return self._ok(out)
        backlog = len(queue.messages)
        return self._ok({"message_backlog_count": backlog, "messages": out})

    def _ack(self, queue: Queue, payload: dict[str, Any]) -> web.Response:
        acks = payload.get("acks", []) or []
        retries = payload.get("retries", []) or []
        if len(acks) + len(retries) > 100:
            return self._error(400, 10208, "at most 100 leases per request")
        ack_count = retry_count = 0
        warnings: list[str] = []
        for item in acks:
            message = self._by_lease(queue, item.get("lease_id"))
            if message is None:
                warnings.append(f"unknown lease {str(item.get('lease_id'))[:8]}")
                continue
            del queue.messages[message.id]
            queue.acked.append(message.id)
            ack_count += 1
        for item in retries:
            message = self._by_lease(queue, item.get("lease_id"))
            if message is None:
                warnings.append(f"unknown lease {str(item.get('lease_id'))[:8]}")
                continue
            delay = item.get("delay_seconds", 0)
            if not isinstance(delay, int) or not 0 <= delay <= 86_400:
                return self._error(400, 10208, "delay_seconds out of range")
            queue.retried.append((message.id, delay))
            message.lease_id = None
            message.visible_at = self.clock() + delay
            self._maybe_dead_letter(queue, message)
            retry_count += 1
        return self._ok({"ackCount": ack_count, "retryCount": retry_count, "warnings": warnings})

    def _by_lease(self, queue: Queue, lease_id: Any) -> QueuedMessage | None:
        """The message a lease was issued for; a late ack after expiry still counts."""
        if not isinstance(lease_id, str):
            return None
        for message in queue.messages.values():
            if lease_id in message.leases:
                return message
        return None


def r2_event(
    key: str, size: int = 1, etag: str = "0" * 32, action: str = "PutObject"
) -> dict[str, Any]:
    """An R2 event notification body for ``key``, as R2 sends it to a queue."""
    return {
        "account": ACCOUNT,
        "action": action,
        "bucket": "whisp-test",
        "object": {"key": key, "size": size, "eTag": etag},
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
    }
