"""The health endpoints, served from the event loop on a real socket."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from consumer.health import Health, HealthServer
from tests.support.s3 import free_port


@pytest.fixture
async def served() -> AsyncIterator[tuple[Health, str]]:
    health = Health(stale_after=60)
    port = free_port()
    server = HealthServer(health, "127.0.0.1", port)
    await server.start()
    try:
        yield health, f"http://127.0.0.1:{port}"
    finally:
        await server.stop()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_healthz_answers_and_unknown_paths_are_404(served: tuple[Health, str]) -> None:
    _, url = served
    assert (await get(url + "/healthz"))[0] == 200
    assert (await get(url + "/"))[0] == 404
    assert (await get(url + "/metrics/extra"))[0] == 404


async def test_ready_only_once_started_and_both_answered(served: tuple[Health, str]) -> None:
    health, url = served
    status, body = await get(url + "/readyz")
    assert status == 503 and '"started": false' in body
    health.ready = True
    health.pulled("cloudflare", backlog=7)
    assert (await get(url + "/readyz"))[0] == 503  # the bucket has not answered yet
    health.bucket_answered()
    assert (await get(url + "/readyz"))[0] == 200
    health.pull_failed("cloudflare", "queue /pull: HTTP 403 10000 Authentication error")
    assert (await get(url + "/readyz"))[0] == 200  # it answered recently all the same
    assert health.source_at is not None
    health.source_at -= 61
    status, body = await get(url + "/readyz")
    assert status == 503 and "10000 Authentication error" in body
    metrics = (await get(url + "/metrics"))[1]
    assert 'whisp_queue_backlog{source="cloudflare"} 7.0' in metrics
    assert "whisp_source_errors_total" in metrics and "whisp_build_info{" in metrics


async def test_a_taken_port_is_an_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = HealthServer(Health(), "127.0.0.1", taken.getsockname()[1])
        with pytest.raises(OSError, match="address already in use"):
            await server.start()
