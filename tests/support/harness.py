"""Running ``whisp run`` as a subprocess against moto's S3 and the queue emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.cfqueue import ACCOUNT, TOKEN, QueueEmulator, r2_event
from tests.support.s3 import s3

QUEUE = "c" * 32


def env_for(
    emulator: QueueEmulator | None, bucket: str, work: Path, **extra: object
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CF_", "S3_", "SQS_"))}
    env.update(
        SOURCE="cloudflare",
        ACCOUNT_ID=ACCOUNT,
        CF_QUEUE_ID=QUEUE,
        CF_API_TOKEN=TOKEN,
        S3_ENDPOINT_URL=os.environ["WHISP_TEST_S3"],
        S3_BUCKET_NAME=bucket,
        S3_ACCESS_KEY_ID="testing",
        S3_SECRET_ACCESS_KEY="testing-secret-value",
        S3_REGION="us-east-1",
        WORK_DIR=str(work),
        POLL_INTERVAL_SECONDS="0.2",
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        WHISPER_THREADS="1",
        HF_HUB_OFFLINE="1",
        LEASE_SECONDS="6",
        RETRY_DELAY_SECONDS="1",
        DRAIN_SECONDS="30",
    )
    if emulator is not None:
        env["CF_API_BASE"] = emulator.api_base
    env.update({k: str(v) for k, v in extra.items()})
    return env


def local_env(root: Path, work: Path, **extra: object) -> dict[str, str]:
    """``env_for`` with no queue and no bucket: the local folder ``root`` is both."""
    env = env_for(None, "unused", work, **extra)
    for name in ("SOURCE", "CF_QUEUE_ID", "CF_API_TOKEN", "ACCOUNT_ID"):
        env.pop(name, None)
    env["LOCAL_ROOT"] = str(root)
    return env


def read_status(path: Path) -> dict[str, Any] | None:
    """A status record in a local folder, or None while it is not there (or half written)."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


class Whisp:
    """One ``whisp run`` process; its log lines are kept for assertions."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        cwd: Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "consumer", "run"],
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,
        )

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"event": raw})
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def processes(self) -> list[int]:
        """The live processes writing to this consumer's log: itself and its workers
        (which inherit its stdout), read from /proc."""
        found = []
        for fd in Path("/proc").glob("[0-9]*/fd/1"):
            try:
                if Path(os.readlink(fd)) == self.log_path:
                    found.append(int(fd.parts[2]))
            except OSError:
                continue  # gone meanwhile, or not ours to read
        return found

    @property
    def owner(self) -> str | None:
        """The owner name this consumer writes in leases and status records."""
        started = self.events("whisp started")
        return str(started[0]["owner"]) if started else None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()


@contextmanager
def whisp(
    env: dict[str, str],
    log: Path,
    cwd: Path | None = None,
    preexec: Callable[[], None] | None = None,
) -> Iterator[Whisp]:
    """``whisp run`` (of the code in ``cwd``, when given) for the block; killed if left on.
    ``preexec`` runs in the child before it starts (a resource limit)."""
    w = Whisp(env, log, cwd, preexec)
    try:
        yield w
    finally:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def upload(
    bucket: str,
    folder: Path,
    prefix: str,
    names: list[str] | None = None,
    emulator: QueueEmulator | None = None,
) -> None:
    """Upload files as a client would, and enqueue the R2 notification of each."""
    client: Any = s3()
    for name in names or sorted(p.name for p in folder.iterdir() if p.is_file()):
        data = (folder / name).read_bytes()
        put = client.put_object(Bucket=bucket, Key=prefix + name, Body=data)
        if emulator is not None:
            etag = put["ETag"].strip('"')
            emulator.send(QUEUE, r2_event(prefix + name, len(data), etag, bucket=bucket))


def put_marker(
    bucket: str, prefix: str, body: dict[str, Any], emulator: QueueEmulator | None
) -> None:
    client: Any = s3()
    data = json.dumps(body).encode()
    put = client.put_object(Bucket=bucket, Key=prefix + "done.json", Body=data)
    if emulator is not None:
        etag = put["ETag"].strip('"')
        emulator.send(QUEUE, r2_event(prefix + "done.json", len(data), etag, bucket=bucket))


def send_non_takes(emulator: QueueEmulator, bucket: str) -> int:
    """Messages that are not takes (unreadable bodies, hostile or foreign keys); how many."""
    emulator.send(QUEUE, "not json", content_type="text")
    emulator.send(QUEUE, "AAAA", content_type="v8")
    emulator.send(QUEUE, {"unexpected": True})
    keys = [
        "recordings/../../etc/x/done.json",
        "recordings/m/t/../done.json",
        "recordings/m/t/u/v/done.json",
        "elsewhere/m/t/u/done.json",
    ]
    for key in keys:
        emulator.send(QUEUE, r2_event(key, bucket=bucket))
    return 3 + len(keys)


def status(bucket: str, key: str) -> dict[str, Any] | None:
    client: Any = s3()
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    return dict(json.loads(body))


def versioned(bucket: str) -> str:
    """Turn on versioning, so that every upload of a key can be counted."""
    client: Any = s3()
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return bucket


def uploads(bucket: str, key: str) -> int:
    """How many times ``key`` was written (the bucket must be ``versioned``)."""
    client: Any = s3()
    found = client.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return sum(1 for v in found if v["Key"] == key)


def locks(bucket: str) -> list[str]:
    """The ``.lock`` objects in the bucket: a lease held, or left by a consumer killed."""
    client: Any = s3()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return [o["Key"] for o in listed if o["Key"].endswith("/.lock")]


def wait_for(check: Callable[[], Any], timeout: float = 90, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
