"""Fixtures of the consumer's tests; helpers live in ``tests/support``."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.storage import Storage
from consumer.storage.local import LocalStorage
from tests.support.s3 import s3_storage


@pytest.fixture(params=["s3", "local"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Each store whisp has: the S3 server's bucket, and a local folder."""
    if request.param == "s3":
        return s3_storage(request.getfixturevalue("bucket"))
    return LocalStorage(tmp_path / "bucket")
