"""Cloudflare Queues through the HTTP pull API: R2 event notifications in.

Pull with ``batch_size`` and ``visibility_timeout_ms``; bodies of type ``json`` and
``bytes`` are base64 (tried first, plain JSON as the fallback), ``text`` is plain; ack and
retry (with ``delay_seconds``) by ``lease_id`` in batches of up to 100. Errors come in
Cloudflare's envelope; 429s and 5xx raise ``SourceUnavailable`` for the service to back
off. The API token is sent as a bearer header and never appears in an error or a log.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import aiohttp

from consumer.errors import SourceUnavailable
from consumer.events import parse_r2
from consumer.retry import SOURCE_REFUSED_WAIT
from consumer.sources import Message, Source

MAX_BATCH = 100  # messages per pull, and leases per ack request


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
            return json.loads(raw)
        except (binascii.Error, ValueError):
            pass
    try:
        return json.loads(body)
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
        self.base = f"{api_base.rstrip('/')}/accounts/{account_id}/queues/{queue_id}/messages"
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.visibility_timeout_ms = visibility_timeout_ms
        self._session: aiohttp.ClientSession | None = None
        self.backlog: int | None = None  # the queue's backlog as the last pull reported it

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        try:
            async with self._session.post(
                self.base + path, json=body, headers=self._headers
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
        result = await self._post(
            "/pull",
            {
                "batch_size": max(1, min(MAX_BATCH, max_messages)),
                "visibility_timeout_ms": self.visibility_timeout_ms,
            },
        )
        raw = result.get("messages") if isinstance(result, dict) else result
        backlog = result.get("message_backlog_count") if isinstance(result, dict) else None
        self.backlog = backlog if isinstance(backlog, int) else None  # for the metrics
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
            await self._post("/ack", {"acks": [{"lease_id": m.handle} for m in batch]})

    async def retry(self, message: Message, delay: float) -> None:
        await self._post(
            "/ack",
            {"retries": [{"lease_id": message.handle, "delay_seconds": max(0, round(delay))}]},
        )

    async def check(self) -> None:
        """An empty ack: proves the token, account and queue without touching a message."""
        await self._post("/ack", {"acks": [], "retries": []})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
