"""Operating ``whisp run`` as systemd and a container do: the start-up self-check, the
notifications, health and metrics, and the operator's commands (``doctor``, ``--force``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.transcribe import bundled_model
from tests.support.cfqueue import QueueEmulator, r2_event
from tests.support.harness import (
    QUEUE,
    env_for,
    local_env,
    put_marker,
    read_status,
    status,
    upload,
    wait_for,
    whisp,
)
from tests.support.s3 import free_port, s3
from tests.support.takes import make_take

pytestmark = pytest.mark.slow
TAKE = Path("recordings/m1/1/alice")
STATUS = "recordings/m1/1/status_alice.json"


def run_whisp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("METRICS_PORT", "99999", "METRICS_PORT"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL"),
        ("VIDEO_PRESET", "nosuch", "VIDEO_PRESET"),
        ("METRICS_PORT", "taken", "METRICS_PORT"),
        ("LOCAL_ROOT", "under-a-file", "LOCAL_ROOT"),
        ("WORK_DIR", "under-a-file", "WORK_DIR"),
        ("WHISPER_MODEL", "missing", "not found; looked in"),
    ],
)
def test_each_bad_setting_is_one_line_and_exit_2(
    tmp_path: Path, taken_port: int, setting: str, value: str, named: str
) -> None:
    """No traceback and no take touched: one line naming the problem, exit status 2
    (which the systemd unit does not restart)."""
    (tmp_path / "a-file").write_text("")
    given = {
        "taken": str(taken_port),
        "under-a-file": str(tmp_path / "a-file" / "below"),
        "missing": str(tmp_path / "no-model-here"),
    }.get(value, value)
    env = {**local_env(tmp_path / "bucket", tmp_path / "work"), setting: given}
    result = run_whisp(env, "run")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    if value == "missing":
        assert json.loads(lines[0])["check"] == "model" and given in lines[0]


def test_every_bad_setting_at_once(tmp_path: Path, taken_port: int) -> None:
    """Settings problems come first (nothing else can be checked without settings)."""
    env = local_env(
        tmp_path / "bucket",
        tmp_path / "work",
        METRICS_PORT="0",
        LOG_LEVEL="chatty",
        VIDEO_PRESET="nosuch",
        CONCURRENCY="many",
    )
    result = run_whisp(env, "run")
    assert result.returncode == 2
    names = [line.split()[2].rstrip(":") for line in result.stderr.strip().splitlines()]
    assert names == ["CONCURRENCY", "VIDEO_PRESET", "LOG_LEVEL", "METRICS_PORT"]
    # The checks after the settings report every failure too.
    (tmp_path / "a-file").write_text("")
    env = local_env(
        tmp_path / "a-file" / "bucket",
        tmp_path / "a-file" / "work",
        METRICS_PORT=taken_port,
        WHISPER_MODEL=str(tmp_path / "none"),
    )
    result = run_whisp(env, "run")
    checks = [json.loads(line)["check"] for line in result.stderr.strip().splitlines()]
    assert result.returncode == 2 and checks == ["folders", "folders", "model", "metrics"]


def test_a_queue_that_refuses_the_token_stops_start_up(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    """A remote that does not answer: exit 1 (systemd tries again a few times), at once,
    instead of backing off forever while looking fine."""
    emulator.create_queue(QUEUE)
    env = env_for(emulator, bucket, tmp_path / "work", CF_API_TOKEN="wrong-token-value")
    result = run_whisp(env, "run")
    (line,) = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert json.loads(line)["check"] == "queue" and "10000" in line
    assert f"queues/{QUEUE}" in line and "wrong-token-value" not in line


def test_preset_flag_is_checked_in_one_line(tmp_path: Path) -> None:
    make_take(tmp_path / "t", duration=0.5, chunks=1)
    result = run_whisp(dict(os.environ), "process", str(tmp_path / "t"), "--preset", "nosuch")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "whisp: --preset nosuch: not a libx264 preset (one of ultrafast, superfast, veryfast, "
        "faster, fast, medium, slow, slower, veryslow, placebo)"
    ]


def notifications(sock: socket.socket) -> list[str]:
    """Every datagram waiting on the stand-in for systemd."""
    sock.setblocking(False)
    found = []
    while True:
        try:
            found.append(sock.recv(4096).decode())
        except BlockingIOError:
            return found


def test_systemd_hears_ready_watchdog_and_stopping_in_order(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        env = local_env(
            tmp_path / "bucket",
            tmp_path / "work",
            NOTIFY_SOCKET=path,
            WATCHDOG_USEC=400_000,  # WatchdogSec=0.4: WATCHDOG=1 every 0.2 s
        )
        seen: list[str] = []
        with whisp(env, tmp_path / "log") as w:

            def watched() -> bool:
                seen.extend(notifications(sock))
                return sum(m == "WATCHDOG=1" for m in seen) >= 3

            wait_for(watched, 60, "three WATCHDOG=1")
            assert w.stop() == 0
        seen.extend(notifications(sock))
    kinds = [message.split("\n")[0].split("=")[0] for message in seen]
    assert kinds[0] == "READY" and seen[0].startswith("READY=1\nSTATUS=running: local")
    stopping = kinds.index("STOPPING")
    assert set(kinds[1:stopping]) == {"WATCHDOG"}
    assert seen[stopping].startswith("STOPPING=1\nSTATUS=draining: 0 take(s) running")
    assert seen[-1] == "STATUS=stopped"
    assert "READY" not in kinds[1:]


def test_health_and_metrics_during_a_run(tmp_path: Path) -> None:
    """A take with captions, end to end: /healthz and /readyz answer, /metrics counts it,
    and every line of the take names it."""
    root = tmp_path / "bucket"
    port = free_port()
    env = local_env(root, tmp_path / "work", METRICS_PORT=port, SWEEP_INTERVAL_SECONDS=0.5)
    base = f"http://127.0.0.1:{port}"
    with whisp(env, tmp_path / "log") as w:
        wait_for(lambda: w.events("whisp started"), 60, "the start")
        assert fetch(base + "/healthz")[0] == 200
        code, body = fetch(base + "/readyz")
        assert code == 200 and json.loads(body)["ready"] is True
        assert fetch(base + "/nope")[0] == 404
        make_take(root / TAKE, duration=2.0)
        (root / TAKE / "done.json").write_text('{"language": "en"}')
        done = wait_for(lambda: (read_status(root / STATUS) or {}).get("state") == "done", 90)
        assert done
        metrics = fetch(base + "/metrics")[1]
        assert w.stop() == 0
    sample = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    assert sample['whisp_takes_total{outcome="done"}'] == 1
    assert sample['whisp_take_seconds_count{outcome="done"}'] == 1
    for stage in ("claimed", "downloading", "processing", "uploading", "encode", "transcribe"):
        assert sample[f'whisp_stage_seconds_count{{stage="{stage}"}}'] == 1, stage
    assert sample["whisp_transcription_rtf_count"] == 1
    assert sample["whisp_pulls_total"] > 0 and sample["whisp_last_pull_timestamp_seconds"] > 0
    assert any(name.startswith("whisp_build_info{") for name in sample)
    lines = w.lines()
    take_lines = [line for line in lines if "meeting_id" in line or "take" in line]
    assert take_lines
    for line in take_lines:
        assert (line["meeting_id"], line["take"], line["user_id"]) == ("m1", "1", "alice"), line
        assert line.get("stage"), line
    started = [line["stage"] for line in lines if line["event"] == "stage started"]
    assert started[:3] == ["claimed", "downloading", "processing"]
    assert {"encode", "transcribe", "mux", "uploading", "done"} <= set(started)
    assert [line["event"] for line in take_lines].count("take started") == 1
    assert w.events("whisp stopped")[0]["processed"] >= 1
    assert all(line.get("level") for line in lines), "a line that is not JSON"


def test_a_missing_model_retries_the_take_until_it_is_there(tmp_path: Path) -> None:
    """The marker asks for a model that is not on disk: a fault of the set-up, so the take
    waits (never ``failed``) and runs once the model is put in place."""
    bundled = bundled_model()
    assert bundled is not None
    root, models = tmp_path / "bucket", tmp_path / "models"
    models.mkdir()
    env = local_env(root, tmp_path / "work", WHISPER_MODEL_DIR=models, RETRY_DELAY_SECONDS=0.5)
    with whisp(env, tmp_path / "log") as w:
        wait_for(lambda: w.events("whisp started"), 60, "the start")
        make_take(root / TAKE, duration=1.0, chunks=2)
        (root / TAKE / "done.json").write_text('{"whisper_model": "base", "language": "en"}')
        waiting = wait_for(
            lambda: (
                (read_status(root / STATUS) or {}).get("stage") == "waiting for the set-up"
                and read_status(root / STATUS)
            ),
            90,
            "the take to wait for its model",
        )
        assert waiting["state"] == "processing"
        assert waiting["error"]["retrying"] and "not found" in waiting["error"]["message"]
        assert waiting["next_try_at"] >= waiting["updated_at"]  # the sweep backs off too
        wait_for(lambda: len(w.events("the set-up stops this take; will retry")) >= 2, 60)
        assert (read_status(root / STATUS) or {}).get("state") != "failed"
        shutil.copytree(bundled, models / "base")
        done = wait_for(
            lambda: (
                (read_status(root / STATUS) or {}).get("state") in ("done", "failed")
                and read_status(root / STATUS)
            ),
            90,
            "the take, once the model is there",
        )
        w.stop()
    assert done["state"] == "done" and done["model"] == "base", done.get("error")
    assert done["attempts"] >= 3
    assert not w.events("take failed")


def test_process_force_reruns_a_done_take(bucket: str, tmp_path: Path) -> None:
    make_take(tmp_path / "take", duration=1.0, chunks=2)
    upload(bucket, tmp_path / "take", "recordings/m/1/u/")
    put_marker(bucket, "recordings/m/1/u/", {"skip_transcription": True}, None)
    env = env_for(None, bucket, tmp_path / "work", SOURCE="sqs", SQS_QUEUE_URL="http://unused")
    runs = [
        run_whisp(env, "process", "recordings/m/1/u/", *flags) for flags in ((), (), ("--force",))
    ]
    assert [r.stdout.strip() for r in runs] == [
        "m/1/u: done",
        "m/1/u: skipped: already done",
        "m/1/u: done",
    ], [r.stderr for r in runs]
    record: Any = status(bucket, "recordings/m/1/status_u.json")
    assert record["state"] == "done" and record["attempts"] == 2
    local = run_whisp(env, "process", str(tmp_path / "take"), "--force")
    assert local.returncode == 2 and "bucket only" in local.stderr


def test_doctor_names_what_it_asked_changes_nothing_and_survives_head(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    emulator.create_queue(QUEUE)
    emulator.send(QUEUE, r2_event("recordings/m/1/u/done.json"))
    env = env_for(emulator, bucket, tmp_path / "work")
    good = run_whisp(env, "doctor")
    assert good.returncode == 0, good.stdout
    endpoint = os.environ["WHISP_TEST_S3"]
    assert f"ok    bucket: bucket '{bucket}' at {endpoint} answered" in good.stdout
    assert f"ok    queue: cloudflare {emulator.api_base}" in good.stdout
    assert "ok    encoder: libx264 opens with preset veryfast" in good.stdout
    client: Any = s3()
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert emulator.backlog(QUEUE) == 1 and emulator.acked(QUEUE) == []
    assert not (tmp_path / "work").exists()
    bad = run_whisp({**env, "S3_BUCKET_NAME": "no-such-bucket"}, "doctor")
    assert bad.returncode == 1
    assert f"FAIL  bucket: bucket 'no-such-bucket' at {endpoint}: " in bad.stdout
    # `whisp doctor | head -1`: the reader leaves after a line; no traceback.
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumer", "doctor"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("ok    settings:")
    proc.stdout.close()
    errors = proc.stderr.read()
    assert proc.wait(120) == 141 and "Traceback" not in errors and errors == ""


def test_doctor_reports_every_bad_setting(tmp_path: Path) -> None:
    env = local_env(tmp_path / "bucket", tmp_path / "work", METRICS_PORT="99999", LOG_LEVEL="x")
    result = run_whisp(env, "doctor")
    assert result.returncode == 2
    assert [line.split(":")[1].strip() for line in result.stdout.splitlines()] == [
        "LOG_LEVEL",
        "METRICS_PORT",
    ]
    assert all(line.startswith("FAIL  settings: ") for line in result.stdout.splitlines())


def test_sigterm_while_draining_says_so(tmp_path: Path) -> None:
    """STOPPING=1, then a STATUS= line while a take drains; the take still finishes."""
    root = tmp_path / "bucket"
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        env = local_env(root, tmp_path / "work", NOTIFY_SOCKET=path)
        with whisp(env, tmp_path / "log") as w:
            wait_for(lambda: w.events("whisp started"), 60, "the start")
            make_take(root / TAKE, duration=4.0)
            (root / TAKE / "done.json").write_text('{"language": "en"}')
            wait_for(
                lambda: (
                    w.events("stage started")
                    and any(line.get("stage") == "encode" for line in w.events("stage started"))
                ),
                60,
                "the encode",
            )
            assert w.stop() == 0
        seen = notifications(sock)
    draining = [m for m in seen if "STATUS=draining: 1 take(s) running" in m]
    assert draining and draining[0].startswith("STOPPING=1")
    assert (read_status(root / STATUS) or {}).get("state") == "done"


def test_a_clients_bad_marker_is_a_warning(tmp_path: Path) -> None:
    """The take fails for good (the marker is wrong), but the service is fine: warning."""
    root = tmp_path / "bucket"
    make_take(root / TAKE, duration=0.5, chunks=1)
    (root / TAKE / "done.json").write_text('{"skip_transcription": "false"}')
    with whisp(local_env(root, tmp_path / "work"), tmp_path / "log") as w:
        failed = wait_for(
            lambda: (
                (read_status(root / STATUS) or {}).get("state") == "failed"
                and read_status(root / STATUS)
            ),
            60,
        )
        w.stop()
    assert failed["error"]["kind"] == "bad_marker"
    (line,) = w.events("take failed")
    assert line["level"] == "warning" and line["error_kind"] == "bad_marker"


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    """The first SIGINT drains; a second one does not wait for the running take."""
    root = tmp_path / "bucket"
    with whisp(local_env(root, tmp_path / "work"), tmp_path / "log") as w:
        wait_for(lambda: w.events("whisp started"), 60, "the start")
        make_take(root / TAKE, duration=8.0)
        (root / TAKE / "done.json").write_text('{"language": "en"}')
        wait_for(lambda: w.events("take started"), 60, "the take")
        w.proc.send_signal(signal.SIGINT)
        wait_for(lambda: w.events("stopping: no new takes; draining"), 30, "the drain")
        assert w.stop(signal.SIGINT, timeout=10) == 1
    assert w.events("second signal: exiting now; running takes come back to the queue")
    assert (read_status(root / STATUS) or {}).get("state") != "done"
