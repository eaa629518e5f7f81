"""The completion notice: signed, retried, and never failing the take."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from consumer.keys import TakeRef
from consumer.webhook import Notifier

SECRET = "hook-secret-123"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[str, bytes, str]], list[int]]]:
    """A local HTTP server that records what it gets and answers from a script of statuses."""
    got: list[tuple[str, bytes, str]] = []
    answers: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        got.append(
            (request.path, await request.read(), request.headers.get("X-Whisp-Signature", ""))
        )
        return web.Response(status=answers.pop(0) if answers else 200)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", got, answers
    await runner.cleanup()


async def test_notice_is_signed_and_retried_until_delivered(
    receiver: tuple[str, list[tuple[str, bytes, str]], list[int]],
) -> None:
    url, got, answers = receiver
    answers.extend([500, 503])
    notifier = Notifier(
        url + "/done/{meeting_id}/{take}/{user_id}", SECRET, attempts=4, backoff=0.01
    )
    result = await notifier.notify(TakeRef("m1", "2", "u3"), "completed", {"video": "k.mp4"}, None)
    assert result == {"delivered": True, "attempts": 3}
    path, body, signature = got[-1]
    assert path == "/done/m1/2/u3"
    assert signature == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert json.loads(body) == {
        "status": "completed",
        "meeting_id": "m1",
        "take": "2",
        "user_id": "u3",
        "outputs": {"video": "k.mp4"},
        "error": None,
    }


async def test_a_notice_that_keeps_failing_is_reported_not_raised(
    receiver: tuple[str, list[tuple[str, bytes, str]], list[int]],
) -> None:
    url, got, answers = receiver
    answers.extend([500] * 10)
    notifier = Notifier(url + "/x", SECRET, attempts=3, backoff=0.01)
    result = await notifier.notify(TakeRef("m", "t", "u"), "failed", {}, "corrupt")
    assert result == {"delivered": False, "attempts": 3, "error": "HTTP 500"}
    assert len(got) == 3
