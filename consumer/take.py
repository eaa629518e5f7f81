"""One take's job: lease, status, download, pipeline, upload, notify.

The job key is the take, never the message: the same marker delivered twice, at once or
later, on one consumer or two, does the work once. The status record beside the take
says where it stands (written first, per stage and last); ``done`` with the same input
fingerprint means there is nothing to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from consumer import __version__, metrics
from consumer.errors import BadMarker, LeaseHeld, ObjectTooLarge, StorageError
from consumer.keys import KeyLayout, TakeRef
from consumer.lease import Lease
from consumer.marker import MAX_MARKER_BYTES, MarkerOptions, parse_marker
from consumer.retry import chunk_wait_delay, lease_wait_delay, take_retry_delay
from consumer.settings import Settings
from consumer.storage import ObjectInfo, Storage, content_type, get_json
from consumer.webhook import Notifier
from consumer.workers import WorkerPool, read_progress
from pipeline.chunks import missing_chunks, parse_chunk_name
from pipeline.errors import ChunkRange, MissingChunks, TakeError
from pipeline.options import MediaOptions
from pipeline.process import TakeOptions

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What the service does with the message: acknowledge it, or retry after ``delay``."""

    state: str  # done, failed, skipped, retry
    reason: str = ""
    delay: float = 0.0

    @property
    def ack(self) -> bool:
        return self.state != "retry"


@dataclass
class TakeJob:
    settings: Settings
    storage: Storage
    workers: WorkerPool
    keys: KeyLayout
    owner: str
    notifier: Notifier | None = None

    async def run(self, ref: TakeRef, force: bool = False) -> Outcome:
        """The take's job; ``force`` runs it whatever its status says (``--force``)."""
        structlog.contextvars.bind_contextvars(
            meeting_id=ref.meeting_id, take=ref.take, user_id=ref.user_id, stage="start"
        )
        log.info("take started", forced=force)
        outcome = await self._run(ref, force)
        # Unbound on success only: the caller's line about an error carries its stage.
        structlog.contextvars.unbind_contextvars("meeting_id", "take", "user_id", "stage")
        return outcome

    async def _run(self, ref: TakeRef, force: bool) -> Outcome:
        keys = self.keys
        found: tuple[bytes | BadMarker, str] | None
        try:
            found = await self.storage.get_bytes(keys.marker_key(ref), MAX_MARKER_BYTES)
        except ObjectTooLarge:
            # Refused unread: the take fails as a bad marker once its lease is held.
            found = BadMarker(f"marker is over {MAX_MARKER_BYTES} bytes"), ""
        if found is None:
            log.info("marker gone; nothing to do")
            return Outcome("skipped", "marker gone")
        marker_body, marker_etag = found
        objects = await self.storage.list_objects(keys.take_prefix(ref))
        chunks = [o for o in objects if parse_chunk_name(o.name)]
        fingerprint = _fingerprint(chunks, marker_etag)
        previous = await get_json(self.storage, keys.status_key(ref)) or {}
        same_input = previous.get("fingerprint", {}).get("hash") == fingerprint["hash"]
        if same_input and previous.get("state") in ("done", "failed") and not force:
            log.info("already processed with the same input", state=previous["state"])
            return Outcome("skipped", f"already {previous['state']}")

        lease = Lease(self.storage, keys.lock_key(ref), self.owner, self.settings.lease_seconds)
        try:
            await lease.acquire()
        except LeaseHeld as e:
            log.info("take is being processed elsewhere", reason=str(e))
            return Outcome("retry", str(e), delay=lease_wait_delay(e.seconds_left))
        lease.keep_renewed()
        status = _Status(self, ref, fingerprint, previous if same_input else {})
        try:
            return await self._work(ref, status, marker_body, chunks)
        finally:
            await lease.release()

    async def _work(
        self,
        ref: TakeRef,
        status: _Status,
        marker_body: bytes | BadMarker,
        chunks: list[ObjectInfo],
    ) -> Outcome:
        """Every take error ends here, in one branch: retried while it may pass (chunks
        still arriving), else the take fails with the error's kind and message."""
        try:
            return await self._checked(ref, status, marker_body, chunks)
        except MissingChunks as e:
            return await self._retry_later(ref, status, e)
        except TakeError as e:
            if e.retryable:  # the set-up's fault (a model not on disk), not the take's
                return await self._wait_for_setup(status, e)
            return await self._fail(ref, status, e.kind, str(e))

    async def _checked(
        self,
        ref: TakeRef,
        status: _Status,
        marker_body: bytes | BadMarker,
        chunks: list[ObjectInfo],
    ) -> Outcome:
        if isinstance(marker_body, BadMarker):
            raise marker_body
        options = parse_marker(marker_body)
        await status.write("processing", "checking")
        missing = _missing(chunks, options)
        if missing:
            raise MissingChunks(missing)
        work = self.settings.work_dir / f"{self.owner}-{uuid.uuid4().hex[:8]}"
        (work / "chunks").mkdir(parents=True)
        (work / "out").mkdir()
        keep = True
        try:
            outcome = await self._make(ref, status, options, chunks, work)
            keep = False
            return outcome
        except TakeError as e:
            keep = e.retryable
            raise
        finally:
            structlog.contextvars.bind_contextvars(stage="end")
            # Local files stay until every upload succeeded (or the take failed for good):
            # an interrupted or retried attempt keeps them for inspection.
            if not keep and options.cleanup:
                shutil.rmtree(work, ignore_errors=True)

    async def _make(
        self,
        ref: TakeRef,
        status: _Status,
        options: MarkerOptions,
        chunks: list[ObjectInfo],
        work: Path,
    ) -> Outcome:
        chunk_dir, out_dir = work / "chunks", work / "out"
        await status.write("processing", "downloading")
        for chunk in chunks:
            # chunk.name was checked by parse_chunk_name: safe as a file name.
            await self.storage.download(chunk.key, chunk_dir / chunk.name)
        await status.write("processing", "processing")
        started = time.monotonic()
        progress = work / "progress.json"
        reporter = asyncio.create_task(self._report(status, progress))
        try:
            result = await self.workers.run(
                chunk_dir, out_dir, work / "tmp", self._options(ref, options), progress
            )
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        metrics.record_pipeline(result.timings, result.duration)
        status.record.pop("progress", None)
        status.record["timings"] = {
            **result.timings,
            "pipeline": round(time.monotonic() - started, 3),
        }
        await status.write("processing", "uploading")
        uploaded: dict[str, str] = {}
        keys = self.keys.output_keys(ref, self.settings.audio_output)
        uploads = sorted(result.outputs.items(), key=lambda kv: kv[0] == "transcript")
        for role, path in uploads:
            key = keys[role]
            await self.storage.upload(path, key, content_type(path))
            uploaded[role] = key
            status.record.setdefault("outputs", {})[role] = {
                "key": key,
                "size": path.stat().st_size,
            }
        summary = result.summary()
        status.record.update(
            duration=summary["duration"],
            video=summary["video"],
            audio=summary["audio"],
            captions=summary["captions"],
            language=summary["language"],
            engine=summary["engine"],
            model=summary["model"],
            cues=summary["cues"],
            warnings=summary["warnings"],
            error=None,
        )
        await self._notify(ref, status, "completed", uploaded, None)
        await status.write("done", "done")
        log.info("take done", duration=result.duration, captions=result.captions)
        return Outcome("done")

    async def _report(self, status: _Status, progress: Path, every: float = 5.0) -> None:
        """Copy the worker's stage and progress into the status record now and then."""
        while True:
            await asyncio.sleep(every)
            found = read_progress(progress)
            if found is not None:
                status.record["progress"] = found.get("progress")
                with contextlib.suppress(StorageError):
                    await status.write("processing", f"processing: {found.get('stage')}")

    def _options(self, ref: TakeRef, marker: MarkerOptions) -> TakeOptions:
        s = self.settings
        return TakeOptions(
            user_id=ref.user_id,
            media=MediaOptions(
                preset=s.video_preset,
                crf=s.video_crf,
                audio_output=s.audio_output,
                max_duration=s.max_duration_seconds,
                max_width=s.max_width,
                max_height=s.max_height,
            ),
            transcribe=not marker.skip_transcription,
            engine=s.whisper_engine,
            model=marker.whisper_model or s.whisper_model,
            language=marker.language or s.language,
            device=s.whisper_device,
            compute_type=s.whisper_compute_type,
            threads=s.whisper_threads,
            model_dir=s.whisper_model_dir,
            expected_video=marker.video_chunks,
            expected_audio=marker.audio_chunks,
            max_total_bytes=s.max_total_bytes,
            labels={"meeting_id": ref.meeting_id, "take": ref.take},
        )

    async def _retry_later(self, ref: TakeRef, status: _Status, error: TakeError) -> Outcome:
        """A take error that may pass (chunks still arriving): retried until
        ``CHUNK_WAIT_SECONDS`` runs out, then a failure like any other."""
        waiting_since = float(status.record.get("waiting_since") or time.time())
        status.record["waiting_since"] = waiting_since
        left = waiting_since + self.settings.chunk_wait_seconds - time.time()
        if left <= 0:
            return await self._fail(ref, status, error.kind, str(error))
        status.record["error"] = {"kind": error.kind, "message": str(error), "retrying": True}
        await status.write("processing", "waiting for chunks")
        log.info("waiting for chunks", error=str(error), seconds_left=round(left))
        return Outcome("retry", str(error), delay=chunk_wait_delay(left))

    async def _wait_for_setup(self, status: _Status, error: TakeError) -> Outcome:
        """A configuration fault is never the take's permanent failure: retried, later."""
        status.record["error"] = {"kind": error.kind, "message": str(error), "retrying": True}
        await status.write("processing", "waiting for the set-up")
        log.error("the set-up stops this take; will retry", error_kind=error.kind, error=str(error))
        attempts = int(status.record.get("attempts", 1))
        return Outcome(
            "retry", str(error), delay=take_retry_delay(attempts, self.settings.retry_delay_seconds)
        )

    async def _fail(self, ref: TakeRef, status: _Status, kind: str, message: str) -> Outcome:
        # A client's bad marker is the client's problem, not the service's: a warning.
        report = log.warning if kind == BadMarker.kind else log.error
        report("take failed", error_kind=kind, error=message)
        status.record["error"] = {"kind": kind, "message": message}
        await self._notify(ref, status, "failed", {}, message)
        await status.write("failed", "failed")
        return Outcome("failed", message)

    async def _notify(
        self,
        ref: TakeRef,
        status: _Status,
        state: str,
        outputs: dict[str, str],
        error: str | None,
    ) -> None:
        if self.notifier is not None:
            status.record["webhook"] = await self.notifier.notify(ref, state, outputs, error)


class _Status:
    """The take's status record, written through to the bucket at each step."""

    def __init__(
        self, job: TakeJob, ref: TakeRef, fingerprint: dict[str, Any], previous: dict[str, Any]
    ) -> None:
        self.job = job
        self.key = job.keys.status_key(ref)
        self.started = time.time()
        self.clock = metrics.StageClock()
        self.record: dict[str, Any] = {
            "meeting_id": ref.meeting_id,
            "take": ref.take,
            "user_id": ref.user_id,
            "attempts": int(previous.get("attempts", 0)) + 1,
            "fingerprint": fingerprint,
            "waiting_since": previous.get("waiting_since"),
            "engine": job.settings.whisper_engine,
            "version": __version__,
            "owner": job.owner,
        }

    async def write(self, state: str, stage: str) -> None:
        structlog.contextvars.bind_contextvars(stage=stage)
        if self.clock.enter(stage):
            log.info("stage started", state=state)
        self.record.update(
            state=state,
            stage=stage,
            updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            elapsed=round(time.time() - self.started, 3),
        )
        body = json.dumps(self.record, indent=2).encode()
        await self.job.storage.put_bytes(self.key, body, "application/json")


def _fingerprint(chunks: list[ObjectInfo], marker_etag: str) -> dict[str, Any]:
    items = sorted((c.name, c.size, c.etag) for c in chunks)
    digest = hashlib.sha256(json.dumps([items, marker_etag]).encode()).hexdigest()
    return {
        "hash": digest,
        "marker_etag": marker_etag,
        "chunks": [{"name": n, "size": s, "etag": e} for n, s, e in items],
    }


def _missing(chunks: list[ObjectInfo], options: MarkerOptions) -> dict[str, list[ChunkRange]]:
    present: dict[str, list[int]] = {}
    for chunk in chunks:
        parsed = parse_chunk_name(chunk.name)
        if parsed is not None:
            present.setdefault(parsed[0], []).append(parsed[1])
    return missing_chunks(present, options.video_chunks, options.audio_chunks)
