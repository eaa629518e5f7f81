"""Fixtures: the Chromium take, a real S3 server and the queue emulator.

The helpers behind them live in ``tests/support``; tests import those, never this file.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cfqueue import QueueEmulator
from tests.support.paths import FIXTURE
from tests.support.s3 import moto_server, s3


@pytest.fixture(scope="session")
def fixture_take() -> Path:
    return FIXTURE


@pytest.fixture(scope="session", autouse=True)
def moto_url() -> Iterator[str]:
    """A real HTTP S3 (and SQS) server for the whole session."""
    with moto_server() as url:
        yield url


_buckets = itertools.count(1)


@pytest.fixture
def bucket(moto_url: str) -> str:
    """A fresh, empty bucket on the S3 server."""
    name = f"whisp-test-{next(_buckets)}"
    s3().create_bucket(Bucket=name)
    return name


@pytest.fixture
def emulator() -> Iterator[QueueEmulator]:
    with QueueEmulator() as q:
        yield q
