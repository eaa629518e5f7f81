"""The embedded default (a local folder), AWS S3 -> SQS through moto, the reconcile sweep
and ``make demo``: each end to end through ``whisp run`` as a subprocess."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import local_env, read_status, status, upload, wait_for, whisp
from tests.support.paths import ROOT
from tests.support.s3 import free_port, s3
from tests.support.sqs import sqs, sqs_env, visible
from tests.support.takes import make_take

pytestmark = pytest.mark.slow
TAKE = Path("recordings/m1/1/alice")
STATUS = "recordings/m1/1/status_alice.json"


def local_status(root: Path) -> dict[str, Any] | None:
    return read_status(root / STATUS)


def test_local_folder_marker_is_the_event(tmp_path: Path) -> None:
    """No cloud settings: a marker written into the folder makes the take, outputs beside it."""
    root = tmp_path / "bucket"
    (root / TAKE).mkdir(parents=True)
    port = free_port()
    with whisp(local_env(root, tmp_path / "work", METRICS_PORT=port), tmp_path / "log") as w:
        wait_for(lambda: any(line.get("event") == "whisp started" for line in w.lines()), 30)
        make_take(root / TAKE, duration=2.0)
        (root / TAKE / "done.json").write_text('{"skip_transcription": true}')
        done = wait_for(
            lambda: (local_status(root) or {}).get("state") == "done" and local_status(root), 60
        )
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        )
        w.stop()
    assert 'whisp_takes_total{outcome="done"} 1.0' in metrics
    assert 'whisp_take_seconds_count{outcome="done"} 1.0' in metrics
    assert done["outputs"]["video"]["key"] == "recordings/m1/1/final_video_alice.mp4"
    assert (root / "recordings/m1/1/final_video_alice.mp4").stat().st_size > 1000
    assert w.lines()[0]["source"] == "local"


def test_sweep_finds_a_take_whose_notification_was_lost(tmp_path: Path) -> None:
    """The marker was there before the service started (no event will come): swept."""
    root = tmp_path / "bucket"
    make_take(root / TAKE, duration=1.0)
    (root / TAKE / "done.json").write_text('{"skip_transcription": true}')
    with whisp(
        local_env(root, tmp_path / "work", SWEEP_INTERVAL_SECONDS=0.5), tmp_path / "log"
    ) as w:
        wait_for(lambda: (local_status(root) or {}).get("state") == "done", 60, "the sweep")
        w.stop()
    (found,) = w.events("sweep found a take without a final status")
    assert (found["meeting_id"], found["take"], found["user_id"]) == ("m1", "1", "alice")
    assert w.events("whisp stopped")[0]["processed"] == 1  # a swept take counts too


def test_two_consumers_sweeping_one_folder_do_the_take_once(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    make_take(root / TAKE, duration=2.0)
    (root / TAKE / "done.json").write_text('{"skip_transcription": true}')
    env = local_env(root, tmp_path / "work", SWEEP_INTERVAL_SECONDS=0.3)
    with whisp(env, tmp_path / "a.log") as a, whisp(env, tmp_path / "b.log") as b:
        wait_for(lambda: (local_status(root) or {}).get("state") == "done", 60, "the take")
        a.stop(), b.stop()
    assert len(a.events("take done")) + len(b.events("take done")) == 1
    assert (local_status(root) or {})["attempts"] == 1


def test_sqs_notifications_from_a_real_bucket_configuration(bucket: str, tmp_path: Path) -> None:
    """moto sends the bucket's S3 events to its SQS queue; whisp reads and deletes them."""
    queue_url = sqs().create_queue(QueueName=f"{bucket}-events")["QueueUrl"]
    arn = sqs().get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    client: Any = s3()
    client.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    prefix = "recordings/m-1.x/1/alice/"
    make_take(tmp_path / "take", duration=1.0, chunks=2)
    upload(bucket, tmp_path / "take", prefix)
    client.put_object(Bucket=bucket, Key=prefix + "done.json", Body=b'{"skip_transcription": true}')
    env = sqs_env(bucket, queue_url, tmp_path / "work", SQS_WAIT_SECONDS=1)
    key = "recordings/m-1.x/1/status_alice.json"
    with whisp(env, tmp_path / "log") as w:
        done = wait_for(
            lambda: (status(bucket, key) or {}).get("state") == "done" and status(bucket, key), 60
        )
        wait_for(lambda: visible(queue_url) == 0, 30, "every message deleted")
        w.stop()
    assert len(done["fingerprint"]["chunks"]) == 4


def test_an_idle_sqs_consumer_stops_at_once(bucket: str, tmp_path: Path) -> None:
    """SIGTERM during a 20 s long poll: the poll is cancelled, not waited out."""
    queue_url = sqs().create_queue(QueueName=f"{bucket}-idle")["QueueUrl"]
    env = sqs_env(bucket, queue_url, tmp_path / "work", SQS_WAIT_SECONDS=20)
    with whisp(env, tmp_path / "log") as w:
        wait_for(lambda: w.events("whisp started"), 60, "the start")
        time.sleep(1.0)  # the first long poll is open
        started = time.monotonic()
        assert w.stop(timeout=20) == 0
        took = time.monotonic() - started
    assert took < 3, f"took {took:.1f} s to stop"
    assert w.events("whisp stopped")


def test_make_demo_runs_end_to_end(tmp_path: Path) -> None:
    """The README's first command: a take with real speech, processed, shown, ended."""
    result = subprocess.run(
        ["make", "-C", str(ROOT), "demo"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "final_video_alice.mp4" in result.stdout
    length = re.search(r"length (\d+\.\d+) s", result.stdout)
    assert length is not None and abs(float(length[1]) - 15.0) < 0.05
    assert "mov_text" in result.stdout and "Good morning" in result.stdout
