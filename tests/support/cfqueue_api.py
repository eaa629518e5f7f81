"""The Cloudflare Queues API's rules, without HTTP: what the emulator (``cfqueue``) answers.

Each public method of ``Queues`` is one API call on one queue: it validates the body as
Cloudflare does (10207 for a body that does not match the schema) and returns the call's
``result``, or raises ``ApiError`` with Cloudflare's status and error code.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_DELAY = 43_200  # seconds: a message's or a retry's delay, 12 h
MAX_VISIBILITY_MS = 43_200_000
NOT_FOUND, SCHEMA, MALFORMED, PAUSED, NO_PULL = 10104, 10207, 10208, 10252, 10106
NUMBER = (int, float)


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.retry_after = status, code, retry_after


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

    def size(self) -> int:
        return len(json.dumps(self.body, default=str))


@dataclass
class Queue:
    queue_id: str
    max_retries: int = 3
    dead_letter: str | None = None
    consumer: str | None = "http_pull"  # or "worker", or None: no consumer at all
    paused: bool = False
    messages: dict[str, QueuedMessage] = field(default_factory=dict)
    acked: list[str] = field(default_factory=list)
    retried: list[tuple[str, int]] = field(default_factory=list)
    pulls: list[int] = field(default_factory=list)  # the batch_size of each pull


def _fields(payload: Any, allowed: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """The payload if it is an object of known fields of the right types, else 10207."""
    if not isinstance(payload, dict):
        raise ApiError(400, SCHEMA, "Request JSON body does not match expected schema")
    for name, value in payload.items():
        kinds = allowed.get(name)
        if (
            kinds is None
            or not isinstance(value, kinds)
            or (isinstance(value, bool) and kinds is NUMBER)
        ):
            raise ApiError(400, SCHEMA, f"Request JSON body does not match schema: {name}")
    return payload


def _in_range(value: Any, low: float, high: float, name: str) -> None:
    if value is not None and not low <= value <= high:
        raise ApiError(400, SCHEMA, f"{name} must be between {low} and {high}")


class Queues:
    """An account's queues and the calls on them (the caller holds the lock)."""

    def __init__(
        self, *, plain_json_bodies: bool, legacy_list_result: bool, clock: Callable[[], float]
    ) -> None:
        self.plain_json_bodies = plain_json_bodies
        self.legacy_list_result = legacy_list_result
        self.clock = clock
        self.queues: dict[str, Queue] = {}
        self._ids = itertools.count(1)

    def consumers(self, queue: Queue, payload: Any) -> list[dict[str, Any]]:
        if queue.consumer is None:
            return []
        consumer: dict[str, Any] = {
            "consumer_id": "f" * 32,
            "type": queue.consumer,
            "queue_name": queue.queue_id,
            "dead_letter_queue": queue.dead_letter or "",
            "settings": {"batch_size": 5, "max_retries": queue.max_retries, "retry_delay": 0},
        }
        if queue.consumer == "http_pull":
            consumer["settings"]["visibility_timeout_ms"] = 30_000
        else:
            consumer["script_name"] = "a-worker"
        return [consumer]

    def publish(self, queue: Queue, payload: Any) -> dict[str, Any]:
        message = _fields(payload, {"body": object, "content_type": str, "delay_seconds": NUMBER})
        self._send_checked(queue, message, 0)
        return {"metadata": {"metrics": self._metrics(queue)}}

    def batch(self, queue: Queue, payload: Any) -> dict[str, Any]:
        batch = _fields(payload, {"messages": list, "delay_seconds": NUMBER})
        for item in batch.get("messages", []):
            message = _fields(item, {"body": object, "content_type": str, "delay_seconds": NUMBER})
            self._send_checked(queue, message, batch.get("delay_seconds", 0))
        return {"metadata": {"metrics": self._metrics(queue)}}

    def _send_checked(self, queue: Queue, message: dict[str, Any], delay: int) -> None:
        delay = message.get("delay_seconds", delay)
        _in_range(delay, 0, MAX_DELAY, "delay_seconds")
        if message.get("content_type", "json") not in ("json", "text"):
            raise ApiError(400, SCHEMA, "content_type must be json or text")
        self.send(queue, message.get("body"), message.get("content_type", "json"), delay)

    def pull(self, queue: Queue, payload: Any) -> Any:
        options = _fields(payload, {"batch_size": NUMBER, "visibility_timeout_ms": NUMBER})
        size = options.get("batch_size", 5)
        timeout_ms = options.get("visibility_timeout_ms", 30_000)
        _in_range(size, 1, 100, "batch_size")
        _in_range(timeout_ms, 1, MAX_VISIBILITY_MS, "visibility_timeout_ms")
        if queue.consumer != "http_pull":
            raise ApiError(400, NO_PULL, "Queue does not have an HTTP pull consumer")
        if queue.paused:
            raise ApiError(429, PAUSED, "Queue delivery is paused", retry_after=5)
        queue.pulls.append(size)
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
                out.append(self._delivered(message))
        if self.legacy_list_result:
            return out
        return {
            "message_backlog_count": len(queue.messages),
            "messages": out,
            "metadata": {"metrics": self._metrics(queue)},
        }

    def ack(self, queue: Queue, payload: Any) -> dict[str, Any]:
        body = _fields(payload, {"acks": list, "retries": list})
        acks = [_fields(a, {"lease_id": str}) for a in body.get("acks", [])]
        retries = [
            _fields(r, {"lease_id": str, "delay_seconds": NUMBER}) for r in body.get("retries", [])
        ]
        for item in retries:
            _in_range(item.get("delay_seconds"), 0, MAX_DELAY, "delay_seconds")
        ack_count = retry_count = 0
        warnings: dict[str, str] = {}
        for item in acks:
            message = self._by_lease(queue, item.get("lease_id"))
            if message is None:
                warnings[str(item.get("lease_id"))] = "message not found"
                continue
            del queue.messages[message.id]
            queue.acked.append(message.id)
            ack_count += 1
        for item in retries:
            message = self._by_lease(queue, item.get("lease_id"))
            if message is None:
                warnings[str(item.get("lease_id"))] = "message not found"
                continue
            delay = item.get("delay_seconds", 0)
            queue.retried.append((message.id, delay))
            message.lease_id = None
            message.visible_at = self.clock() + delay
            self._maybe_dead_letter(queue, message)
            retry_count += 1
        return {"ackCount": ack_count, "retryCount": retry_count, "warnings": warnings}

    def send(self, queue: Queue, body: Any, content_type: str, delay: float) -> str:
        message_id = f"{next(self._ids):032x}"
        queue.messages[message_id] = QueuedMessage(
            id=message_id,
            body=body,
            content_type=content_type,
            timestamp_ms=int(time.time() * 1000),
            visible_at=self.clock() + float(delay),
        )
        return message_id

    def expire(self, queue: Queue) -> None:
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
                message.attempts = 0
                message.visible_at = self.clock()
                self.queues[queue.dead_letter].messages[message.id] = message

    def _metrics(self, queue: Queue) -> dict[str, int]:
        messages = list(queue.messages.values())
        return {
            "backlog_count": len(messages),
            "backlog_bytes": sum(m.size() for m in messages),
            "oldest_message_timestamp_ms": min((m.timestamp_ms for m in messages), default=0),
        }

    def _delivered(self, message: QueuedMessage) -> dict[str, Any]:
        if message.content_type == "text":
            body = message.body
        elif message.content_type == "json":
            text = json.dumps(message.body)
            body = text if self.plain_json_bodies else base64.b64encode(text.encode()).decode()
        else:  # bytes, v8 (what a Worker producer may send): base64 of the raw bytes
            raw = message.body if isinstance(message.body, bytes) else str(message.body).encode()
            body = base64.b64encode(raw).decode()
        return {
            "id": message.id,
            "body": body,
            "timestamp_ms": message.timestamp_ms,
            "attempts": message.attempts,
            "lease_id": message.lease_id,
            "metadata": {  # the two keys Cloudflare documents; "api" as in its SDK's example
                "CF-sourceMessageSource": "api",
                "CF-Content-Type": message.content_type,
            },
        }

    def _by_lease(self, queue: Queue, lease_id: Any) -> QueuedMessage | None:
        """The message a lease was issued for; a late ack after expiry still counts."""
        for message in queue.messages.values():
            if lease_id in message.leases:
                return message
        return None
