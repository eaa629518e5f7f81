"""The start-up self-check: ``whisp run`` passes it before its first pull, and ``whisp
doctor`` prints it. One line per check, and nothing is changed: folders are checked for
write access (not written), the bucket is asked for an object that is not there, the
queue gets an empty acknowledgement.

Two kinds of fault, two exit statuses for ``whisp run``:

- this machine's set-up (settings, a folder that cannot be written, the encoder, the
  model, the health port): restarting cannot fix it, so 2 (``CONFIG_FAULT``), which the
  systemd unit's ``RestartPreventExitStatus=2`` leaves stopped until someone fixes it;
- the bucket or the queue not answering: it may be a network not up yet, so 1, and
  systemd tries again a few times (``StartLimitBurst``).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consumer import logs
from consumer.settings import Settings
from consumer.sources import Source
from consumer.storage import Storage
from consumer.workers import init_worker
from pipeline.checks import check_encoder, check_model

CONFIG_FAULT = 2
UNREACHABLE = 1
PROBE_KEY = ".whisp-check"  # under RECORDINGS_PREFIX; never written


@dataclass(frozen=True)
class Check:
    name: str
    detail: str
    ok: bool = True
    remote: bool = False  # the bucket or the queue, not this machine

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def exit_status(checks: Iterable[Check]) -> int:
    """0 when every check passed; else 2 for a fault of this machine, 1 for a remote one."""
    failed = [c for c in checks if not c.ok]
    if any(not c.remote for c in failed):
        return CONFIG_FAULT
    return UNREACHABLE if failed else 0


def unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be (made and) written by this process, or None if it can."""
    path = path.expanduser().absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{path}: {existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{path}: {existing} is not writable by uid {os.getuid()}"
    return None


def check_folders(settings: Settings) -> list[Check]:
    folders = {"WORK_DIR": settings.work_dir}
    if settings.source == "local":
        folders["LOCAL_ROOT"] = settings.local_root
    checks = []
    for name, path in folders.items():
        problem = unwritable(path)
        detail = problem or f"{path.expanduser().absolute()} writable"
        checks.append(Check("folders", f"{name} {detail}", ok=problem is None))
    return checks


async def check_pipeline(settings: Settings) -> list[Check]:
    """The encoder opens with the preset and the model loads: in a worker process, as a
    take would, so the service's own process never holds a model or a codec."""
    jobs: list[tuple[str, Callable[..., str], tuple[Any, ...], dict[str, Any]]] = [
        ("encoder", check_encoder, (settings.video_preset, settings.video_crf), {}),
        (
            "model",
            check_model,
            (settings.whisper_engine, settings.whisper_model),
            {
                "device": settings.whisper_device,
                "compute_type": settings.whisper_compute_type,
                "threads": settings.whisper_threads,
                "model_dir": settings.whisper_model_dir,
            },
        ),
    ]
    loop = asyncio.get_running_loop()
    checks = []
    with ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(os.getpid(), logs.worker_config()),
    ) as pool:
        for name, function, args, kwargs in jobs:
            try:
                detail = await loop.run_in_executor(pool, _call, function, args, kwargs)
            except BrokenProcessPool:
                checks.append(Check(name, "the check's process died", ok=False))
                break
            except Exception as e:
                checks.append(Check(name, str(e) or type(e).__name__, ok=False))
            else:
                checks.append(Check(name, detail))
    return checks


def _call(function: Callable[..., str], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return function(*args, **kwargs)


def bucket_address(settings: Settings) -> str:
    if settings.source == "local":
        return f"local folder {settings.local_root.expanduser().absolute()}"
    return f"bucket {settings.s3_bucket_name!r} at {settings.endpoint_url or 'AWS S3'}"


def queue_address(settings: Settings) -> str:
    if settings.source == "cloudflare":
        base = settings.cf_api_base.rstrip("/")
        return f"cloudflare {base}/accounts/{settings.account_id}/queues/{settings.cf_queue_id}"
    if settings.source == "sqs":
        return f"sqs {settings.sqs_queue_url}"
    return f"local folder {settings.local_root.expanduser().absolute()} (markers are events)"


async def probe_bucket(settings: Settings, storage: Storage) -> None:
    """Ask the bucket for an object that is not there: an answer proves the endpoint, the
    bucket and the keys."""
    key = f"{settings.recordings_prefix.strip('/')}/{PROBE_KEY}"
    with contextlib.suppress(ValueError):  # an object there: the bucket answered all the same
        await storage.get_bytes(key, 1)


async def check_bucket(settings: Settings, storage: Storage) -> Check:
    where = bucket_address(settings)
    try:
        await asyncio.wait_for(probe_bucket(settings, storage), 30)
    except Exception as e:
        return Check("bucket", f"{where}: {e or type(e).__name__}", ok=False, remote=True)
    return Check("bucket", f"{where} answered")


async def check_queue(settings: Settings, source: Source) -> Check:
    where = queue_address(settings)
    try:
        await asyncio.wait_for(source.check(), 30)
    except Exception as e:
        return Check("queue", f"{where}: {e or type(e).__name__}", ok=False, remote=True)
    return Check("queue", f"{where} answered")
