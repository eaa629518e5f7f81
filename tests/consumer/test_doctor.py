"""``whisp doctor`` against the emulator and the S3 server: it proves a pull consumer is
attached to the queue by reading the queue's consumers, and acknowledges nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.cli.doctor import doctor
from tests.support.cfqueue import QueueEmulator
from tests.support.harness import QUEUE
from tests.support.inprocess import cloudflare_settings


@pytest.mark.parametrize(("consumer", "ok"), [("http_pull", True), ("worker", False)])
async def test_doctor_checks_for_an_http_pull_consumer(
    emulator: QueueEmulator,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    consumer: str,
    ok: bool,
) -> None:
    emulator.create_queue(QUEUE, consumer=consumer)
    await doctor(cloudflare_settings(emulator, bucket, tmp_path))
    queue_line = next(line for line in capsys.readouterr().out.splitlines() if "queue" in line)
    if ok:
        assert queue_line.startswith("ok")
    else:
        assert queue_line.startswith("FAIL") and "no HTTP pull consumer" in queue_line
    assert "ack" not in emulator.requests and emulator.requests == ["consumers"]
