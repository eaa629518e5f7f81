"""Worker processes for the CPU work, so the event loop never blocks and a crash in a
codec fails one take, not the service. Each worker keeps its Whisper model between takes.

A take whose caller gives up (its lease was lost, the drain timed out) is told to stop: a
flag file beside its progress file, which the worker reads at its next progress report
(about once a second while encoding, at every stage change), then abandons the take.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from consumer.errors import WorkerCrashed
from pipeline.process import TakeOptions, TakeResult, process_take


def _init_worker(parent: int) -> None:
    # The service drains on SIGINT/SIGTERM; workers finish their take meanwhile.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A service killed outright (SIGKILL, OOM) must not leave its workers behind. The
    # service names itself: a worker still starting when it died (spawning and importing
    # take seconds) would otherwise take its new parent, init, for the service, and wait
    # for work forever.
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


class _Abandoned(Exception):
    """Raised in a worker whose take was given up by the service: its result is not wanted."""


def _cancel_flag(progress: Path) -> Path:
    return progress.with_name(progress.name + ".cancel")


def _process(
    chunk_dir: Path, out_dir: Path, work_dir: Path, options: TakeOptions, progress: Path
) -> TakeResult:
    """Runs in the worker: the pipeline, reporting its stage to a small local file."""
    last = 0.0
    cancel = _cancel_flag(progress)

    def on_stage(stage: str, fraction: float) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 1.0 or stage != "encode":
            last = now
            if cancel.exists():
                raise _Abandoned(stage)
            progress.write_text(json.dumps({"stage": stage, "progress": round(fraction, 3)}))

    return process_take(chunk_dir, out_dir, work_dir, options, on_stage)


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
            initializer=_init_worker,
            initargs=(os.getpid(),),
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
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, _process, chunk_dir, out_dir, work_dir, options, progress
            )
        except asyncio.CancelledError:
            _cancel_flag(progress).touch()
            raise
        except BrokenProcessPool:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new()
            raise WorkerCrashed("the worker process died while processing the take") from None

    def close(self) -> None:
        """Stop the workers now: a take still running in one is abandoned (its lease is
        released and its message comes back), not waited for."""
        processes = list(getattr(self._executor, "_processes", {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
