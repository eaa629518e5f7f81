"""The Cloudflare Queues client against the emulator, and the emulator's own semantics."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pytest

from consumer.errors import SourceUnavailable
from consumer.sources.cloudflare import CloudflareQueue
from tests.support.cfqueue import ACCOUNT, TOKEN, QueueEmulator, r2_event

QUEUE = "a" * 32


def client(
    emulator: QueueEmulator, token: str = TOKEN, visibility_ms: int = 60_000
) -> CloudflareQueue:
    return CloudflareQueue(
        api_base=emulator.api_base,
        account_id=ACCOUNT,
        queue_id=QUEUE,
        token=token,
        visibility_timeout_ms=visibility_ms,
    )


async def test_pull_decodes_r2_events_and_ack_removes_them(emulator: QueueEmulator) -> None:
    emulator.create_queue(QUEUE)
    for i in range(3):
        emulator.send(QUEUE, r2_event(f"recordings/m/t/u/video_{i}.webm"))
    queue = client(emulator)
    messages = await queue.receive(10)
    assert [m.events[0].key for m in messages] == [
        f"recordings/m/t/u/video_{i}.webm" for i in range(3)
    ]
    assert all(m.attempts == 1 for m in messages)
    await queue.ack(messages)
    assert emulator.backlog(QUEUE) == 0 and len(emulator.acked(QUEUE)) == 3
    await queue.close()


async def test_visibility_timeout_redelivers_with_more_attempts(emulator: QueueEmulator) -> None:
    emulator.create_queue(QUEUE)
    emulator.send(QUEUE, r2_event("recordings/m/t/u/done.json"))
    queue = client(emulator, visibility_ms=1000)
    [first] = await queue.receive(10)
    assert await queue.receive(10) == []  # hidden while leased
    await asyncio.sleep(1.2)
    [again] = await queue.receive(10)
    assert again.id == first.id and again.attempts == 2 and again.handle != first.handle
    await queue.ack([first])  # a late ack with the expired lease is still accepted
    assert emulator.backlog(QUEUE) == 0
    await queue.close()


async def test_retry_with_delay_then_dead_letter(emulator: QueueEmulator) -> None:
    emulator.create_queue(QUEUE, max_retries=2, dead_letter="dlq")
    emulator.send(QUEUE, r2_event("recordings/m/t/u/done.json"))
    queue = client(emulator)
    [m] = await queue.receive(10)
    await queue.retry(m, 1)
    assert await queue.receive(10) == []  # delayed
    await asyncio.sleep(1.1)
    [m2] = await queue.receive(10)
    assert m2.attempts == 2
    await queue.retry(m2, 0)
    assert emulator.backlog(QUEUE) == 0 and emulator.backlog("dlq") == 1
    await queue.close()


async def test_plain_json_bodies_and_legacy_list_results() -> None:
    with QueueEmulator(plain_json_bodies=True, legacy_list_result=True) as emulator:
        emulator.create_queue(QUEUE)
        emulator.send(QUEUE, r2_event("recordings/m/t/u/done.json"))
        queue = client(emulator)
        [m] = await queue.receive(5)
        assert m.events[0].key == "recordings/m/t/u/done.json"
        await queue.close()


async def test_unreadable_bodies_are_messages_without_events(emulator: QueueEmulator) -> None:
    emulator.create_queue(QUEUE)
    emulator.send(QUEUE, "hello", content_type="text")
    emulator.send(QUEUE, {"no": "object"})
    queue = client(emulator)
    messages = await queue.receive(10)
    assert len(messages) == 2 and all(m.events == [] for m in messages)
    assert all(m.meta["unreadable"] for m in messages)
    await queue.close()


async def test_429_and_5xx_raise_unavailable_then_recover(emulator: QueueEmulator) -> None:
    emulator.create_queue(QUEUE)
    emulator.send(QUEUE, r2_event("recordings/m/t/u/done.json"))
    emulator.inject("pull", 429, 10250)
    emulator.inject("pull", 500, 15000)
    queue = client(emulator)
    with pytest.raises(SourceUnavailable, match="429 10250"):
        await queue.receive(5)
    with pytest.raises(SourceUnavailable, match="500 15000"):
        await queue.receive(5)
    assert len(await queue.receive(5)) == 1
    await queue.close()


async def test_bad_token_is_an_error_that_does_not_show_the_token(emulator: QueueEmulator) -> None:
    emulator.create_queue(QUEUE)
    queue = client(emulator, token="wrong-token-abcdef")
    with pytest.raises(SourceUnavailable) as err:
        await queue.receive(5)
    assert "10000" in str(err.value) and "wrong-token" not in str(err.value)
    await queue.close()


async def test_emulator_error_envelopes(emulator: QueueEmulator) -> None:
    """Unknown queue and bad JSON answer Cloudflare's envelope with its codes."""
    emulator.create_queue(QUEUE)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    base = f"{emulator.api_base}/accounts/{ACCOUNT}/queues"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/{'b' * 32}/messages/pull", json={}, headers=headers) as r:
            assert r.status == 404 and (await r.json())["errors"][0]["code"] == 10104
        async with http.post(f"{base}/{QUEUE}/messages/pull", data=b"{x", headers=headers) as r:
            assert r.status == 400 and (await r.json())["errors"][0]["code"] == 10207
        body = {"body": {"a": 1}, "content_type": "json"}
        async with http.post(f"{base}/{QUEUE}/messages", json=body, headers=headers) as r:
            assert (await r.json())["success"] is True
        async with http.post(
            f"{base}/{QUEUE}/messages/pull", json={"batch_size": 5}, headers=headers
        ) as r:
            message = (await r.json())["result"]["messages"][0]
    assert json.loads(base64.b64decode(message["body"])) == {"a": 1}
    assert message["metadata"]["CF-Content-Type"] == "json"
