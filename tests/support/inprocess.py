"""Running ``Service`` in the test's own event loop, against the real S3 server (moto)
and the queue emulator: a failure points at a line, not at a log (arq's way)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from consumer.backends import make_source, make_storage
from consumer.keys import KeyLayout
from consumer.service import Service
from consumer.settings import Settings, load_settings
from consumer.storage import Storage
from consumer.take import TakeJob
from consumer.workers import WorkerPool
from tests.support.cfqueue import ACCOUNT, TOKEN, QueueEmulator
from tests.support.harness import QUEUE

T = TypeVar("T")


def cloudflare_settings(
    emulator: QueueEmulator, bucket: str, work: Path, **overrides: Any
) -> Settings:
    """Settings of a consumer on the emulator's queue and the S3 server's bucket."""
    values: dict[str, Any] = {
        "source": "cloudflare",
        "account_id": ACCOUNT,
        "cf_queue_id": QUEUE,
        "cf_api_token": TOKEN,
        "cf_api_base": emulator.api_base,
        "s3_endpoint_url": os.environ["WHISP_TEST_S3"],
        "s3_bucket_name": bucket,
        "s3_access_key_id": "testing",
        "s3_secret_access_key": "testing",
        "s3_region": "us-east-1",
        "work_dir": work,
        "poll_interval_seconds": 0.2,
        "lease_seconds": 6,
        "retry_delay_seconds": 1,
        "drain_seconds": 30,
        "whisper_threads": 1,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return load_settings(**values)


def take_job(storage: Storage, owner: str, folder: Path, **settings: Any) -> TakeJob:
    """The take job alone, as the consumer ``owner`` runs it (work files under ``folder``)."""
    values: dict[str, Any] = {"source": "local", "work_dir": folder / "work", **settings}
    return TakeJob(load_settings(**values), storage, WorkerPool(1), KeyLayout(), owner)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Service]:
    """The service running in this loop until the block ends (then stopped and drained)."""
    service = Service(settings, make_storage(settings), make_source(settings))
    task = asyncio.create_task(service.run())
    try:
        yield service
    finally:
        service.stop()
        await asyncio.wait_for(task, 60)


async def until(
    check: Callable[[], Awaitable[T | None] | T | None], timeout: float = 60, what: str = ""
) -> T:
    """Poll ``check`` (sync or async) until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or 'the condition'}")
