"""The completion notice: a signed POST to WEBHOOK_URL, retried, never failing the take."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import aiohttp
import structlog

from consumer.keys import TakeRef
from consumer.retry import WEBHOOK_BASE, webhook_delay

log = structlog.get_logger(__name__)


def sign(body: bytes, secret: str) -> str:
    """The X-Whisp-Signature header value: HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Notifier:
    def __init__(
        self, url_template: str, secret: str, attempts: int = 4, backoff: float = WEBHOOK_BASE
    ) -> None:
        self.url_template = url_template
        self.secret = secret
        self.attempts = attempts
        self.backoff = backoff

    async def notify(
        self, ref: TakeRef, status: str, outputs: dict[str, str], error: str | None
    ) -> dict[str, Any]:
        """POST the notice; returns what happened, for the status record."""
        url = self.url_template.format(
            meeting_id=ref.meeting_id, take=ref.take, user_id=ref.user_id
        )
        body = json.dumps(
            {
                "status": status,
                "meeting_id": ref.meeting_id,
                "take": ref.take,
                "user_id": ref.user_id,
                "outputs": outputs,
                "error": error,
            }
        ).encode()
        headers = {"Content-Type": "application/json", "X-Whisp-Signature": sign(body, self.secret)}
        last = ""
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for attempt in range(1, self.attempts + 1):
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        if response.status < 300:
                            return {"delivered": True, "attempts": attempt}
                        last = f"HTTP {response.status}"
                except (TimeoutError, aiohttp.ClientError) as e:
                    last = type(e).__name__
                if attempt < self.attempts:
                    await asyncio.sleep(webhook_delay(attempt, self.backoff))
        log.warning("webhook failed", error=last, attempts=self.attempts)
        return {"delivered": False, "attempts": self.attempts, "error": last}
