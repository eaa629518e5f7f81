"""Shared fixtures: the Chromium take, made takes, a real S3 server and the queue emulator."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from whisp.testing.cfqueue import QueueEmulator

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT.parent / "shared" / "fixtures" / "chromium-vp8-timeslice"
if not FIXTURE.is_dir():  # an installed checkout without ../shared: the demo take is the same
    FIXTURE = ROOT / "whisp" / "demo_take"
SCRIPT = (
    "Good morning everyone. This is the weekly engineering sync. First item on the agenda "
    "is the release schedule. We plan to ship version two point one next Tuesday. Second "
    "item is the database migration, which finished last night without errors. Third, we "
    "need volunteers for the on call rotation in December."
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def fixture_take() -> Path:
    return FIXTURE


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A real HTTP S3 (and SQS) server: moto's ThreadedMotoServer on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


_buckets = iter(range(1, 1_000_000))


@pytest.fixture
def bucket(moto_url: str) -> str:
    """A fresh, empty bucket on the S3 server."""
    name = f"whisp-test-{next(_buckets)}"
    s3().create_bucket(Bucket=name)
    return name


def s3(url: str | None = None) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url or os.environ["WHISP_TEST_S3"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(autouse=True, scope="session")
def _s3_url_env(moto_url: str) -> None:
    os.environ["WHISP_TEST_S3"] = moto_url


@pytest.fixture
def emulator() -> Iterator[QueueEmulator]:
    with QueueEmulator() as q:
        yield q
