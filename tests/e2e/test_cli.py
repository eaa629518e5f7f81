"""``whisp process`` on a local folder, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.mediaprobe import duration
from tests.support.s3 import s3
from tests.support.takes import make_take


def whisp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args], capture_output=True, text=True, timeout=300
    )


def test_process_prints_where_each_output_is(tmp_path: Path) -> None:
    make_take(tmp_path / "bob", duration=2.0, chunks=2)
    result = whisp(
        "process",
        str(tmp_path / "bob"),
        "--out",
        str(tmp_path / "out"),
        "--skip-transcription",
        "--audio-output",
        "m4a",
        "--crf",
        "30",
    )
    assert result.returncode == 0, result.stderr
    video = tmp_path / "out" / "final_video_bob.mp4"
    assert f"video  {video}" in result.stdout
    assert "final_audio_bob.m4a" in result.stdout
    assert "captions skipped: not requested" in result.stdout
    assert abs(duration(video) - 2.0) < 0.1


def test_bad_input_exits_non_zero_with_one_clear_line(tmp_path: Path) -> None:
    make_take(tmp_path / "t", duration=1.0, chunks=3)
    (tmp_path / "t" / "video_1.webm").unlink()
    result = whisp("process", str(tmp_path / "t"), "--skip-transcription")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"whisp: {tmp_path / 't'}: missing chunks: video 1"
    ]


def test_unknown_prefix_is_explained(tmp_path: Path) -> None:
    result = whisp("process", "not/a/take")
    assert result.returncode == 2 and "neither a folder nor a take prefix" in result.stderr


def test_process_a_take_prefix_in_the_bucket(bucket: str, tmp_path: Path) -> None:
    """``whisp process recordings/M/T/U/`` runs the service's job once: outputs and status."""
    from tests.support.harness import env_for, put_marker, status, upload

    make_take(tmp_path / "take", duration=1.0, chunks=2)
    upload(bucket, tmp_path / "take", "recordings/m/1/u/")
    put_marker(bucket, "recordings/m/1/u/", {"skip_transcription": True}, None)
    env = env_for(None, bucket, tmp_path / "work", SOURCE="sqs", SQS_QUEUE_URL="http://unused")
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "process", "recordings/m/1/u/"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "m/1/u: done"
    assert (status(bucket, "recordings/m/1/status_u.json") or {}).get("state") == "done"


def test_doctor_checks_bucket_queue_codecs_and_model(bucket: str, tmp_path: Path) -> None:
    from tests.support.cfqueue import QueueEmulator
    from tests.support.harness import QUEUE, env_for

    with QueueEmulator() as emulator:
        emulator.create_queue(QUEUE)
        good = env_for(emulator, bucket, tmp_path)
        ok = subprocess.run(
            [sys.executable, "-m", "consumer", "doctor"],
            env=good,
            capture_output=True,
            text=True,
            timeout=120,
        )
        bad = subprocess.run(
            [sys.executable, "-m", "consumer", "doctor"],
            env={**good, "CF_API_TOKEN": "wrong-token-value"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert ok.returncode == 0, ok.stdout
    assert "ok    queue: cloudflare" in ok.stdout and "ok    model:" in ok.stdout
    assert "ok    codec: libx264 (encode)" in ok.stdout
    assert bad.returncode == 1 and "FAIL  queue:" in bad.stdout and "10000" in bad.stdout
    assert "wrong-token-value" not in bad.stdout + bad.stderr


def test_process_remote_sends_the_webhook_and_refuses_a_take_that_is_not_there(
    bucket: str, tmp_path: Path
) -> None:
    """The remote form notifies like the service; a prefix with no marker is an error."""
    from tests.support.harness import env_for, put_marker, upload
    from tests.support.receiver import Receiver

    make_take(tmp_path / "take", duration=1.0, chunks=1)
    upload(bucket, tmp_path / "take", "recordings/m/1/u/")
    put_marker(bucket, "recordings/m/1/u/", {"skip_transcription": True}, None)
    with Receiver() as hook:
        env = env_for(
            None,
            bucket,
            tmp_path / "work",
            SOURCE="sqs",
            SQS_QUEUE_URL="http://unused",
            WEBHOOK_URL=hook.url + "/hook/{meeting_id}/{take}/{user_id}",
            WEBHOOK_SECRET="s3cret",
        )

        def process(prefix: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "consumer", "process", prefix]
            return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

        done = process("recordings/m/1/u/")
        missing = process("recordings/m/1/nobody/")
    assert done.returncode == 0, done.stderr
    (got,) = hook.got
    assert got.path == "/hook/m/1/u" and json.loads(got.body)["status"] == "completed"
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == [
        "whisp: recordings/m/1/nobody/: no such take (no done.json)"
    ]
    assert not s3().list_objects_v2(Bucket=bucket, Prefix="recordings/m/1/nobody/").get("Contents")
