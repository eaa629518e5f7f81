"""The Cloudflare Queues client against the emulator, and the emulator's own semantics."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest
import structlog
from prometheus_client import REGISTRY

from consumer.errors import SourceError, SourceUnavailable
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
            assert r.status == 400 and (await r.json())["errors"][0]["code"] == 10208
        body = {"body": {"a": 1}, "content_type": "json"}
        async with http.post(f"{base}/{QUEUE}/messages", json=body, headers=headers) as r:
            assert (await r.json())["success"] is True
        async with http.post(
            f"{base}/{QUEUE}/messages/pull", json={"batch_size": 5}, headers=headers
        ) as r:
            message = (await r.json())["result"]["messages"][0]
    assert json.loads(base64.b64decode(message["body"])) == {"a": 1}
    assert message["metadata"]["CF-Content-Type"] == "json"


async def call(
    emulator: QueueEmulator, method: str, path: str, body: object = None, queue: str = QUEUE
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One raw API call: status, headers, JSON answer."""
    url = f"{emulator.api_base}/accounts/{ACCOUNT}/queues/{queue}{path}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    data = body if isinstance(body, bytes) else None
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, json=None if data else body, data=data, headers=headers) as r,
    ):
        return r.status, dict(r.headers), await r.json()


def code(answer: dict[str, Any]) -> object:
    errors = answer["errors"]
    assert isinstance(errors, list) and answer["success"] is False
    return errors[0]["code"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/messages/pull", {"visibility_timeout": 1000}),  # the name some docs pages use
        ("/messages/pull", {"batch_size": 0}),
        ("/messages/pull", {"batch_size": 101}),
        ("/messages/pull", {"batch_size": "5"}),
        ("/messages/pull", {"visibility_timeout_ms": 43_200_001}),
        ("/messages/ack", {"retries": [{"lease_id": "x", "delay_seconds": 43_201}]}),
        ("/messages/ack", {"acks": [{"id": "x"}]}),
        ("/messages/ack", []),
        ("/messages", {"body": {}, "delay_seconds": 43_201}),
        ("/messages", {"body": "x", "content_type": "v8"}),
    ],
)
async def test_emulator_refuses_bodies_off_the_schema_with_10207(
    emulator: QueueEmulator, path: str, body: object
) -> None:
    emulator.create_queue(QUEUE)
    status, _, answer = await call(emulator, "POST", path, body)
    assert status == 400 and code(answer) == 10207


async def test_emulator_pull_answers_the_backlog_and_its_metrics(emulator: QueueEmulator) -> None:
    emulator.create_queue(QUEUE)
    for i in range(3):
        status, _, answer = await call(emulator, "POST", "/messages", {"body": {"n": i}})
        assert status == 200
    result = answer["result"]
    assert isinstance(result, dict) and result["metadata"]["metrics"]["backlog_count"] == 3
    _, _, answer = await call(emulator, "POST", "/messages/pull", {"batch_size": 2})
    result = answer["result"]
    assert isinstance(result, dict)
    assert result["message_backlog_count"] == 3  # unacknowledged, the two in flight included
    metrics = result["metadata"]["metrics"]
    assert metrics["backlog_count"] == 3 and metrics["backlog_bytes"] > 0
    assert metrics["oldest_message_timestamp_ms"] > 1.6e12
    keys = {k for m in result["messages"] for k in m["metadata"]}
    assert keys == {"CF-Content-Type", "CF-sourceMessageSource"}


async def test_emulator_paused_queue_and_queue_without_pull_consumer(
    emulator: QueueEmulator,
) -> None:
    emulator.create_queue(QUEUE)
    emulator.pause(QUEUE)
    status, headers, answer = await call(emulator, "POST", "/messages/pull", {})
    assert status == 429 and code(answer) == 10252 and int(headers["Retry-After"]) > 0
    emulator.create_queue("w" * 32, consumer="worker")
    status, _, answer = await call(emulator, "POST", "/messages/pull", {}, queue="w" * 32)
    assert status >= 400 and answer["success"] is False
    _, _, answer = await call(emulator, "GET", "/consumers", queue="w" * 32)
    assert [c["type"] for c in answer["result"]] == ["worker"]


async def test_emulator_expired_messages_go_to_the_dead_letter_queue(
    emulator: QueueEmulator,
) -> None:
    """Never acknowledged: delivered max_retries times, attempts + 1 each, then dead."""
    emulator.create_queue(QUEUE, max_retries=2, dead_letter="dlq")
    emulator.send(QUEUE, r2_event("recordings/m/t/u/done.json"))
    queue = client(emulator, visibility_ms=300)
    attempts = []
    for _ in range(2):
        [m] = await queue.receive(5)
        attempts.append(m.attempts)
        await asyncio.sleep(0.35)
    assert attempts == [1, 2] and await queue.receive(5) == []
    assert emulator.backlog(QUEUE) == 0 and emulator.backlog("dlq") == 1
    await queue.close()


async def test_client_reads_the_backlog_and_backs_off_as_told(emulator: QueueEmulator) -> None:
    emulator.create_queue(QUEUE)
    for i in range(3):
        emulator.send(QUEUE, r2_event(f"recordings/m/t/u/video_{i}.webm"))
    queue = client(emulator)
    assert len(await queue.receive(1)) == 1 and queue.backlog == 3
    emulator.pause(QUEUE)
    with pytest.raises(SourceUnavailable, match="10252") as err:
        await queue.receive(1)
    assert err.value.retry_after == 5
    await queue.close()


async def test_client_logs_an_ack_that_settled_less_than_sent(emulator: QueueEmulator) -> None:
    """An ack with a lease the queue no longer knows: the API's warnings are logged."""
    emulator.create_queue(QUEUE)
    emulator.send(QUEUE, r2_event("recordings/m/t/u/done.json"))
    queue = client(emulator)
    [m] = await queue.receive(5)
    await queue.ack([m])
    before = REGISTRY.get_sample_value("whisp_settle_failures_total", {"source": "cloudflare"})
    with structlog.testing.capture_logs() as logs:
        await queue.ack([m])  # gone already
        await queue.retry(m, 10 * 86_400)  # a delay past 12 h is sent as 12 h, not refused
    warned = [e for e in logs if e["event"] == "queue settled fewer messages than sent"]
    assert len(warned) == 2 and warned[0]["settled"] == 0
    assert m.handle in warned[0]["warnings"]
    after = REGISTRY.get_sample_value("whisp_settle_failures_total", {"source": "cloudflare"})
    assert after == (before or 0) + 2  # counted in the metrics, one per message
    await queue.close()


async def test_check_proves_an_http_pull_consumer_is_attached(emulator: QueueEmulator) -> None:
    emulator.create_queue(QUEUE)
    await client(emulator).check()
    emulator.create_queue(QUEUE, consumer="worker")
    with pytest.raises(SourceError, match=r"no HTTP pull consumer.*worker"):
        await client(emulator).check()
    emulator.create_queue(QUEUE, consumer=None)
    with pytest.raises(SourceError, match="consumers: none"):
        await client(emulator).check()
    assert "ack" not in emulator.requests  # it changes nothing
