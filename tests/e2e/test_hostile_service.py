"""``whisp run`` under faults, kills and a hostile operator's eye (issue 11, "make the proof
permanent"): real subprocesses, the S3 server behind the fault-injecting proxy, the queue
emulator injecting its own faults, real SIGKILLs.

- Faults and secrets: takes at LOG_LEVEL=debug through a proxy that fails, throttles,
  resets, drops answers after the write and delays 15% of the bucket's requests, and a
  queue that answers 429 and 5xx: every take done once, no lock left; no secret in any
  log line, status record, webhook body or ``whisp doctor`` line.
- Crash matrix: one consumer SIGKILLed at each stage of a take (download, encode,
  transcription, upload); the other's sweep finishes it: done once, no lock left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from consumer.keys import KeyLayout, TakeRef
from tests.support.cfqueue import TOKEN, QueueEmulator
from tests.support.harness import (
    QUEUE,
    Whisp,
    env_for,
    locks,
    put_marker,
    status,
    upload,
    versioned,
    wait_for,
    whisp,
)
from tests.support.s3 import s3
from tests.support.s3proxy import S3Proxy, random_faults
from tests.support.served import Served
from tests.support.speech import SPEECH_TAKE
from tests.support.takes import make_take

pytestmark = pytest.mark.slow
KEYS = KeyLayout()
S3_SECRET = "testing-secret-value"  # env_for's S3_SECRET_ACCESS_KEY
WEBHOOK_SECRET = "whsec-" + "k" * 24


class Receiver:
    """A webhook receiver that keeps every body it was sent."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        self._served = Served(self._app, "webhook-receiver")

    async def _hook(self, request: web.Request) -> web.Response:
        with self._lock:
            self.bodies.append(await request.read())
        return web.Response(status=204)

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._hook)
        return app

    def __enter__(self) -> Receiver:
        self._served.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._served.__exit__(*exc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._served.port}/done/{{meeting_id}}/{{take}}/{{user_id}}"


def record(bucket: str, ref: TakeRef) -> dict[str, Any]:
    return status(bucket, KEYS.status_key(ref)) or {}


def test_faults_everywhere_and_no_secret_anywhere(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    emulator.create_queue(QUEUE, max_retries=10)
    refs = [TakeRef("hostile", "1", f"u{i}") for i in range(3)]
    make_take(tmp_path / "take", duration=2.0, chunks=2)
    for ref in refs:
        upload(versioned(bucket), tmp_path / "take", KEYS.take_prefix(ref), None, emulator)
    for path, status_, code in [("pull", 429, 10252), ("pull", 500, 10001), ("ack", 503, 10001)]:
        emulator.inject(path, status_, code, times=2, message=f"echo {TOKEN}")
    chaos = random_faults(0.15, seed=11)
    with S3Proxy(os.environ["WHISP_TEST_S3"], chaos=chaos, delay=0.5) as proxy, Receiver() as hook:
        env = env_for(
            emulator,
            bucket,
            tmp_path / "work",
            S3_ENDPOINT_URL=proxy.url,
            LOG_LEVEL="DEBUG",
            WEBHOOK_URL=hook.url,
            WEBHOOK_SECRET=WEBHOOK_SECRET,
            SWEEP_INTERVAL_SECONDS=2,
            LEASE_SECONDS=4,
            CONCURRENCY=2,
        )
        with whisp(env, tmp_path / "run.log") as w:
            for ref in refs:
                put_marker(bucket, KEYS.take_prefix(ref), {"skip_transcription": True}, emulator)
            wait_for(
                lambda: all(record(bucket, r).get("state") == "done" for r in refs),
                150,
                "every take done",
            )
            wait_for(lambda: not locks(bucket), 30, "every lock released")
            assert w.stop() == 0
        emulator.inject("consumers", 400, 10001, message=f"bad token {TOKEN}")
        doctor = subprocess.run(
            [sys.executable, "-m", "consumer", "doctor"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    injected = sum(proxy.injected.values())
    assert injected >= 10, proxy.injected  # the faults really happened
    assert len(w.events("take done")) == len(refs)  # each take made once
    assert "FAIL" in doctor.stdout and "bad token ***" in doctor.stdout
    texts = {
        "log": (tmp_path / "run.log").read_text(),
        "status": json.dumps([record(bucket, r) for r in refs]),
        "webhook": b"\n".join(hook.bodies).decode(),
        "doctor": doctor.stdout + doctor.stderr,
    }
    assert len(hook.bodies) >= len(refs) and len(texts["log"].splitlines()) > 30
    for secret in (S3_SECRET, TOKEN, WEBHOOK_SECRET):
        for where, text in texts.items():
            assert secret not in text, f"{where} holds a secret"
    print(
        f"faults injected: bucket {proxy.injected}, queue 6; log lines scanned:",
        len(texts["log"].splitlines()),
    )


STAGES = {
    # where a is killed -> the proxy rule that makes it last long enough to see
    # (``claimed`` lasts milliseconds: not caught reliably by polling the record)
    "downloading": "chunks",
    "processing": None,  # the encode
    "transcribe": None,  # 40 s of speech: seconds of Whisper
    "uploading": "outputs",
}


def speech_excerpt(folder: Path, chunks: int) -> None:
    """The first ``chunks`` chunks (10 s each) of both tracks of the speech-3min take."""
    folder.mkdir()
    for kind in ("video", "audio"):
        for i in range(chunks):
            shutil.copy(SPEECH_TAKE / f"{kind}_{i}.webm", folder)


def at_stage(w: Whisp, bucket: str, ref: TakeRef, stage: str) -> bool:
    """Whether w works on the take at ``stage``: for transcription, its worker's ``stage
    started`` line (transcription may overlap the encode: the record's stage, refreshed
    every 5 s, can miss it); for the others, the status record's stage."""
    if stage == "transcribe":
        return any(
            line["event"] == "stage started" and line.get("stage") == "transcribe"
            for line in w.lines()
            if line.get("user_id") == ref.user_id
        )
    seen = record(bucket, ref)
    return seen.get("stage", "").startswith(stage) and seen.get("owner") == w.owner


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_consumer_killed_at_each_stage_leaves_its_take_to_the_other(
    emulator: QueueEmulator, bucket: str, tmp_path: Path, stage: str
) -> None:
    emulator.create_queue(QUEUE, max_retries=5)
    ref = TakeRef("crash", "1", stage)
    marker: dict[str, object] = {"skip_transcription": True}
    if stage == "transcribe":
        speech_excerpt(tmp_path / "take", chunks=4)
        marker = {"language": "en"}
    else:
        make_take(tmp_path / "take", duration=3.0, chunks=2)
    upload(versioned(bucket), tmp_path / "take", KEYS.take_prefix(ref))
    rule = STAGES[stage]

    def slow(method: str, path: str, headers: dict[str, str]) -> bool:
        name = path.rsplit("/", 1)[-1]
        if rule == "chunks":
            return method == "GET" and name.startswith(("video_", "audio_"))
        return rule == "outputs" and method == "PUT" and name.startswith("final_")

    # The whole-take path: a take followed while recorded has its own crash test.
    common: dict[str, object] = {"LEASE_SECONDS": 3, "SWEEP_INTERVAL_SECONDS": 1, "FOLLOW_TAKES": 0}
    outputs = set(KEYS.output_keys(ref, "wav").values())
    with S3Proxy(os.environ["WHISP_TEST_S3"], slow=slow, delay=3.0) as proxy:
        env_a = env_for(emulator, bucket, tmp_path / "wa", S3_ENDPOINT_URL=proxy.url, **common)
        env_b = env_for(emulator, bucket, tmp_path / "wb", **common)
        with whisp(env_a, tmp_path / "a.log") as a:
            wait_for(lambda: a.owner, 30, "a up")
            put_marker(bucket, KEYS.take_prefix(ref), marker, emulator)
            wait_for(lambda: at_stage(a, bucket, ref, stage), 60, f"a at {stage}")
            a.stop(signal.SIGKILL)
        assert record(bucket, ref)["state"] == "processing"
        if stage != "uploading":  # nothing of a's attempt reached the bucket
            listed = s3().list_objects_v2(Bucket=bucket).get("Contents", [])
            assert not outputs & {o["Key"] for o in listed}
        with whisp(env_b, tmp_path / "b.log") as b:
            wait_for(lambda: record(bucket, ref).get("state") == "done", 90, "b finishes it")
            wait_for(lambda: not locks(bucket), 20, "the lock released")
            assert b.stop() == 0
        # b's start-up removed the dead a's work folder only if they share WORK_DIR; here
        # they do not: a's is left, and is stale by the rule (its pid is gone).
    done = record(bucket, ref)
    assert done["owner"] == b.owner and done["attempts"] == 2
    if stage == "transcribe":  # b transcribed it again, whole
        assert done["captions"].startswith("embedded") and done["duration"] > 39
    assert len(b.events("take done")) == 1 and not a.events("take done")
    video = KEYS.output_keys(ref, "wav")["video"]
    versions = s3().list_object_versions(Bucket=bucket, Prefix=video).get("Versions", [])
    # A PUT the store had wholly received when a was killed still lands (the proxy, like a
    # store, finishes it): at most that one more version, and the record is b's.
    assert len(versions) == (1 if stage != "uploading" else 2) or len(versions) == 1
