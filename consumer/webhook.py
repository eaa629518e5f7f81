"""The completion notice: a signed POST to WEBHOOK_URL, retried, never failing the take.

Each notice has a delivery id (``X-Whisp-Delivery``, the same on every retry of it, so a
receiver can drop repeats) and is signed with a timestamp (``X-Whisp-Timestamp``, Unix
seconds, fresh on every attempt): ``X-Whisp-Signature: sha256=<hex>`` is HMAC-SHA256 of
``f"{timestamp}.{body}"`` under WEBHOOK_SECRET, as Stripe and Slack sign theirs, so a
receiver that refuses old timestamps cannot be fed a recorded request again. The
receiver's check is in the README ("Webhook").

Retried with ``consumer.retry.webhook_delay``: network errors, 5xx, 408 and 429 (whose
``Retry-After`` is honoured up to ``WEBHOOK_RETRY_AFTER_MAX``). Any other 4xx is the
receiver refusing the notice: sending it again would not change its mind.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import aiohttp
import structlog

from consumer.keys import TakeRef
from consumer.retry import WEBHOOK_BASE, webhook_delay
from consumer.settings import Settings

log = structlog.get_logger(__name__)

ATTEMPTS = 4
TIMEOUT_SECONDS = 15.0
RETRIED_4XX = frozenset({408, 429})


def sign(body: bytes, timestamp: str, secret: str) -> str:
    """The X-Whisp-Signature header value: HMAC-SHA256 of ``timestamp.body``."""
    signed = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def _retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is not worth honouring)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class Notifier:
    def __init__(
        self,
        url_template: str,
        secret: str,
        attempts: int = ATTEMPTS,
        backoff: float = WEBHOOK_BASE,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.url_template = url_template  # checked by Settings: only the take's ids
        self.secret = secret
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> Notifier | None:
        """The service's notifier, or None when no WEBHOOK_URL is set."""
        if not settings.webhook_url or settings.webhook_secret is None:
            return None
        return cls(settings.webhook_url, settings.webhook_secret.get_secret_value())

    async def notify(
        self, ref: TakeRef, status: str, outputs: dict[str, str], error: str | None
    ) -> dict[str, Any]:
        """POST the notice until delivered, refused or out of attempts; returns what
        happened, for the status record (``state``: ``delivered`` or ``failed``)."""
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
        delivery = str(uuid.uuid4())
        last = ""
        attempt = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as s:
            for attempt in range(1, self.attempts + 1):
                timestamp = str(int(time.time()))
                headers = {
                    "Content-Type": "application/json",
                    "X-Whisp-Delivery": delivery,
                    "X-Whisp-Timestamp": timestamp,
                    "X-Whisp-Signature": sign(body, timestamp, self.secret),
                }
                retry_after = None
                try:
                    async with s.post(url, data=body, headers=headers) as response:
                        if response.status < 300:
                            log.info("webhook delivered", delivery=delivery, attempts=attempt)
                            return {"state": "delivered", "delivery": delivery, "attempts": attempt}
                        last = f"HTTP {response.status}"
                        if 400 <= response.status < 500 and response.status not in RETRIED_4XX:
                            break  # refused: asking again would not change the answer
                        retry_after = _retry_after(response.headers.get("Retry-After"))
                except (TimeoutError, aiohttp.ClientError) as e:
                    last = type(e).__name__
                if attempt < self.attempts:
                    await asyncio.sleep(webhook_delay(attempt, self.backoff, retry_after))
        log.warning("webhook failed", error=last, attempts=attempt, delivery=delivery)
        return {"state": "failed", "delivery": delivery, "attempts": attempt, "error": last}
