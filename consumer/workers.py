"""Worker processes for the CPU work, so the event loop never blocks and a crash in a
codec fails one take, not the service. Each worker keeps its Whisper model between takes.

A take whose caller gives up (its lease was lost, the drain timed out) is told to stop: a
flag file beside its progress file, which the worker reads at its next progress report
(about once a second while encoding, at every stage change), then abandons the take.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import structlog

from consumer import logs
from consumer.errors import WorkerCrashed
from pipeline.avlog import capture_ffmpeg_messages
from pipeline.live import follow_take
from pipeline.process import Stage, TakeOptions, TakeResult, process_take

log = structlog.get_logger(__name__)

# How long a worker told to give its take up may take to do so: it looks every 0.1 s
# while waiting for a chunk, about every second while encoding.
STOP_SECONDS = 10.0


def init_worker(parent: int, log_config: dict[str, Any]) -> None:
    """A worker process's start (and the start-up check's): it ends with ``parent`` and
    logs as the service does."""
    # A service killed outright (SIGKILL, OOM) must not leave its workers behind. The
    # parent's pid comes from the parent: one killed while this process was still
    # starting would otherwise look like init (pid 1) here, and be waited on forever.
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    # The service drains on SIGINT/SIGTERM; workers finish their take meanwhile.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # FFmpeg's messages become log lines of the take (first: it moves sys.stderr).
    capture_ffmpeg_messages(logging.DEBUG if log_config["level"] == "DEBUG" else logging.WARNING)
    logs.configure(**log_config)


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


class _Abandoned(Exception):
    """Raised in a worker whose take was given up by the service: its result is not wanted."""


def cancel_flag(progress: Path) -> Path:
    """The flag that tells a worker to give its take up (beside its progress file)."""
    return progress.with_name(progress.name + ".cancel")


def _reporter(progress: Path) -> Stage:
    """A worker's ``on_stage``: logs each stage, writes the progress to ``progress`` (at
    most once a second while encoding) and gives the take up when the service says so."""
    last = 0.0
    cancel = cancel_flag(progress)

    def on_stage(stage: str, fraction: float) -> None:
        nonlocal last
        if stage != logs.process_field("stage"):
            logs.bind_process(stage=stage)
            log.info("stage started")
        now = time.monotonic()
        if now - last >= 1.0 or stage != "encode":
            last = now
            if cancel.exists():
                raise _Abandoned(stage)
            progress.write_text(json.dumps({"stage": stage, "progress": round(fraction, 3)}))

    return on_stage


def _process(
    chunk_dir: Path, out_dir: Path, work_dir: Path, options: TakeOptions, progress: Path
) -> TakeResult:
    """Runs in the worker: the pipeline, reporting its stage to a small local file."""
    logs.bind_process(**options.labels, user_id=options.user_id, stage="processing")
    try:
        return process_take(chunk_dir, out_dir, work_dir, options, _reporter(progress))
    finally:
        logs.clear_process()


def _follow(work: Path, expected: TakeOptions, progress: Path) -> TakeResult:
    """Runs in the worker: a take followed while it is recorded (``pipeline.live``), from
    the chunks the service lands in ``work/chunks`` to its outputs in ``work/out``."""
    logs.bind_process(**expected.labels, user_id=expected.user_id, stage="following")
    cancel = cancel_flag(progress)

    def check() -> None:
        if cancel.exists():
            raise _Abandoned("following")

    try:
        return follow_take(work, work / "out", expected, _reporter(progress), check)
    finally:
        logs.clear_process()


def read_progress(progress: Path) -> dict[str, Any] | None:
    """The stage a worker last reported, or None before it has said anything."""
    try:
        found = json.loads(progress.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


class WorkerPool:
    def __init__(self, size: int) -> None:
        self.size = size
        self._executor = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.size,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(os.getpid(), logs.worker_config()),
        )

    async def run(
        self,
        chunk_dir: Path,
        out_dir: Path,
        work_dir: Path,
        options: TakeOptions,
        progress: Path,
    ) -> TakeResult:
        """The pipeline on one take in a worker; ``WorkerCrashed`` if the worker dies.
        Cancelled, it tells the worker to abandon the take and does not wait for it."""
        return await self._in_worker(
            progress, _process, chunk_dir, out_dir, work_dir, options, progress
        )

    async def follow(self, work: Path, expected: TakeOptions, progress: Path) -> TakeResult:
        """A take followed while it is recorded, made in a worker (see ``_follow``): it
        holds the worker until the take has ended and is made, or is given up."""
        return await self._in_worker(progress, _follow, work, expected, progress)

    async def _in_worker(
        self, progress: Path, work: Callable[..., TakeResult], *args: Any
    ) -> TakeResult:
        """``work(*args)`` in a worker. Cancelled, it tells the worker to give the take up
        and waits until it has (``STOP_SECONDS`` at most): the caller removes the take's
        folder next, which a worker still running would write into again."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, work, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):  # its folder may be gone already
                cancel_flag(progress).touch()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(future, STOP_SECONDS)
            raise
        except BrokenProcessPool:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new()
            raise WorkerCrashed("the worker process died while processing the take") from None

    def close(self) -> None:
        """Stop the workers now: a take still running in one is abandoned (its lease is
        released and its status says so), not waited for. SIGKILL, as the workers ignore
        SIGTERM (``init_worker``): ``terminate`` left an encode running to its end."""
        processes = list((getattr(self._executor, "_processes", None) or {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        alive = [p for p in processes if p.is_alive()]
        for process in alive:
            process.kill()
        for process in alive:
            process.join(5)
        if alive:
            log.warning("worker processes stopped", workers=len(alive))
