"""Cloudflare Queues through the HTTP pull API: R2 event notifications in.

Pull with ``batch_size`` and ``visibility_timeout_ms``; bodies of type ``json`` and
``bytes`` are base64 (tried first, plain JSON as the fallback), ``text`` is plain; ack and
retry (with ``delay_seconds``, at most 12 h) by ``lease_id`` in batches of up to 100.
What the API answers is read: ``message_backlog_count`` (how many are unacknowledged, so
the service pulls again at once), and an ack's ``ackCount``, ``retryCount`` and
``warnings`` (how a lease that ran out shows), logged when they fall short. Errors come
in Cloudflare's envelope; 429s (with ``Retry-After``) and 5xx raise ``SourceUnavailable``
for the service to back off. The API token is sent as a bearer header and never appears
in an error or a log.

A pull consumer cannot extend a message's visibility: the service acknowledges a marker
once its take is claimed, so the timeout need only cover the claim, not the take.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import aiohttp
import structlog

from consumer import metrics, safejson
from consumer.errors import SourceError, SourceUnavailable
from consumer.events import parse_r2
from consumer.retry import SOURCE_REFUSED_WAIT
from consumer.sources import Message, Source

log = structlog.get_logger(__name__)

MAX_BATCH = 100  # messages per pull, and leases per ack request
MAX_DELAY_SECONDS = 43_200  # a retry's delay_seconds: 12 h at most


def decode_body(body: Any, content_type: str | None) -> Any:
    """A pulled message's body as JSON-like data, or None when it cannot be read."""
    if isinstance(body, dict | list):
        return body
    if not isinstance(body, str):
        return None
    if content_type == "v8":
        return None
    if content_type in ("json", "bytes", None):
        try:
            raw = base64.b64decode(body, validate=True)
            return safejson.loads(raw)
        except (binascii.Error, ValueError):
            pass
    try:
        return safejson.loads(body)
    except ValueError:
        return None


class CloudflareQueue(Source):
    name = "cloudflare"

    def __init__(
        self,
        *,
        api_base: str,
        account_id: str,
        queue_id: str,
        token: str,
        visibility_timeout_ms: int = 900_000,
    ) -> None:
        self.queue_url = f"{api_base.rstrip('/')}/accounts/{account_id}/queues/{queue_id}"
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.visibility_timeout_ms = visibility_timeout_ms
        self._session: aiohttp.ClientSession | None = None
        self.backlog: int | None = None  # the queue's backlog as the last pull reported it

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The ``result`` of one API call; ``SourceUnavailable`` for anything but success."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        try:
            async with self._session.request(
                method, self.queue_url + path, json=body, headers=self._headers
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                try:
                    data = await response.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    data = None
        except (aiohttp.ClientError, TimeoutError) as e:
            raise SourceUnavailable(f"queue {path}: {type(e).__name__}") from None
        errors = data.get("errors") if isinstance(data, dict) else None
        detail = "; ".join(
            f"{e.get('code')} {e.get('message')}" for e in errors or [] if isinstance(e, dict)
        )
        if status == 429 or status >= 500:
            delay = float(retry_after) if retry_after and retry_after.isdigit() else None
            raise SourceUnavailable(f"queue {path}: HTTP {status} {detail}".strip(), delay)
        if status >= 300 or not isinstance(data, dict) or data.get("success") is False:
            # 403 (token), 404 (queue): nothing works until fixed; the service backs off.
            raise SourceUnavailable(
                f"queue {path}: HTTP {status} {detail}".strip(), SOURCE_REFUSED_WAIT
            )
        return data.get("result")

    async def receive(self, max_messages: int) -> list[Message]:
        result = await self._call(
            "POST",
            "/messages/pull",
            {
                "batch_size": max(1, min(MAX_BATCH, max_messages)),
                "visibility_timeout_ms": self.visibility_timeout_ms,
            },
        )
        raw = result.get("messages") if isinstance(result, dict) else result
        self.backlog = _backlog(result)
        messages = []
        for item in raw if isinstance(raw, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("lease_id"), str):
                continue  # without a lease it cannot be acknowledged; it will expire
            metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
            body = decode_body(item.get("body"), (metadata or {}).get("CF-Content-Type"))
            event = parse_r2(body)
            attempts = item.get("attempts")
            messages.append(
                Message(
                    id=str(item.get("id", "")),
                    events=[event] if event is not None else [],
                    attempts=attempts if isinstance(attempts, int) else 1,
                    handle=item["lease_id"],
                    meta={"unreadable": event is None},
                )
            )
        return messages

    async def ack(self, messages: list[Message]) -> None:
        for i in range(0, len(messages), MAX_BATCH):
            batch = messages[i : i + MAX_BATCH]
            acks = [{"lease_id": m.handle} for m in batch]
            result = await self._call("POST", "/messages/ack", {"acks": acks})
            _read_settlement(result, "ackCount", len(batch))

    async def retry(self, message: Message, delay: float) -> None:
        seconds = min(MAX_DELAY_SECONDS, max(0, round(delay)))
        retries = [{"lease_id": message.handle, "delay_seconds": seconds}]
        result = await self._call("POST", "/messages/ack", {"retries": retries})
        _read_settlement(result, "retryCount", 1)

    async def check(self) -> None:
        """Proves the token, account and queue, and that an HTTP pull consumer is attached
        (without one, pulls fail or see nothing), without touching a message."""
        result = await self._call("GET", "/consumers")
        kinds = [c.get("type") for c in result or [] if isinstance(c, dict)]
        if "http_pull" not in kinds:
            found = ", ".join(str(k) for k in kinds) or "none"
            raise SourceError(
                f"no HTTP pull consumer on the queue (consumers: {found}); "
                "add one: wrangler queues consumer http add QUEUE"
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _backlog(result: Any) -> int | None:
    """How many messages the pull said are unacknowledged, if it said."""
    if not isinstance(result, dict):
        return None
    count = result.get("message_backlog_count")
    if not isinstance(count, int):
        metrics = (result.get("metadata") or {}).get("metrics") or {}
        count = metrics.get("backlog_count") if isinstance(metrics, dict) else None
    return count if isinstance(count, int) else None


def _read_settlement(result: Any, counted: str, expected: int) -> None:
    """Log an ack or retry that settled fewer messages than sent, with the API's warnings:
    a lease that ran out (the message went back to the queue) shows there."""
    result = result if isinstance(result, dict) else {}
    count, warnings = result.get(counted), result.get("warnings")
    if (isinstance(count, int) and count < expected) or warnings:
        short = expected - count if isinstance(count, int) else 0
        metrics.SETTLE_FAILURES.labels(CloudflareQueue.name).inc(max(0, short))
        log.warning(
            "queue settled fewer messages than sent",
            sent=expected,
            settled=count,
            warnings=warnings if isinstance(warnings, dict | list) else str(warnings),
        )
