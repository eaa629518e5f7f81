"""One take's job in two phases: claim it, then make it.

``claim`` reads the bucket (listing, status, marker) and takes the lease. It ends in an
``Outcome`` when there is nothing to claim (already done with this input, claimed by
another consumer, chunks still arriving) or in a ``Claim``: lease held and renewed,
status ``processing`` written. From then on the bucket carries the take, so the caller
acknowledges the marker's message before ``work``: downloading, the pipeline in a worker
process, uploading and the final status. A lost lease cancels the work; nothing is
written without the lease, ``done`` least of all.

Longer than 300 lines, for a reason: the claim, the work and the ways an attempt ends
(done, failed, waiting, interrupted) share the claim's lease and status record; apart,
each half would reach into the other's state.

The job key is the take, never the message: the same marker delivered twice, at once or
later, on one consumer or two, does the work once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from consumer import background, metrics, workdirs
from consumer.errors import (
    BadMarker,
    LeaseHeld,
    LeaseLost,
    StorageError,
    disk_full,
)
from consumer.keys import KeyLayout, TakeRef
from consumer.lease import LOCK_MAX_BYTES, Lease, read_lock
from consumer.marker import (
    MarkerOptions,
    chunk_limit,
    missing_in,
    pipeline_options,
    read_marker,
)
from consumer.meeting import rebuild_and_announce
from consumer.retry import chunk_wait_delay, lease_wait_delay, take_retry_delay
from consumer.settings import Settings
from consumer.status import WAITING_FOR_CHUNKS, StatusRecord, look
from consumer.storage import ObjectInfo, Storage, content_type
from consumer.webhook import Notifier
from consumer.workers import WorkerPool, read_progress
from pipeline.errors import ChunkRange, MissingChunks, TakeError, reason
from pipeline.process import TakeOptions, TakeResult

log = structlog.get_logger(__name__)

# How long an ended attempt's last status write may take (the drain is waiting on it).
ATTEMPT_WRITE_SECONDS = 5.0
NO_ROOM = "the work folder is full; will retry"


@dataclass(frozen=True)
class Outcome:
    """How an attempt at a take ended, and what becomes of a message that delivered it:
    acknowledged, or retried after ``delay`` seconds."""

    state: str  # done, failed, skipped, retry, lost
    reason: str = ""
    delay: float = 0.0

    @property
    def ack(self) -> bool:
        return self.state != "retry"


@dataclass
class Claim:
    """A take this consumer holds: the lease is held and renewed, the status says so."""

    ref: TakeRef
    lease: Lease
    status: StatusRecord
    marker: ObjectInfo
    options: MarkerOptions | BadMarker
    chunks: list[ObjectInfo]


class Following(Protocol):
    """A take this consumer followed while it was recorded (``consumer.follow``)."""

    folder: Path

    async def hand_over(
        self, chunks: list[ObjectInfo], options: TakeOptions
    ) -> Awaitable[TakeResult] | None:
        """The take's first pass to await, or None to make the take whole."""


@contextlib.asynccontextmanager
async def any_worker() -> AsyncIterator[None]:
    yield


@dataclass
class TakeJob:
    settings: Settings
    storage: Storage
    workers: WorkerPool
    keys: KeyLayout
    owner: str
    notifier: Notifier | None = None
    # Held while the take's worker runs: the service gives a follower up to make room
    # for a take that has ended (``Service.worker_slot``).
    worker_slot: Callable[[], AbstractAsyncContextManager[None]] = any_worker

    async def run(self, ref: TakeRef, force: bool = False) -> Outcome:
        """Claim and make the take now (``whisp process``, the sweep): no message waits.
        ``force`` makes it whatever its status says (``whisp process --force``)."""
        claim = await self.claim(ref, force)
        return claim if isinstance(claim, Outcome) else await self.work(claim)

    async def claim(self, ref: TakeRef, force: bool = False) -> Claim | Outcome:
        """Take the lease and write ``processing``, or say why not (see the module). The
        bucket is read under the lease: a take finished by another consumer a moment ago
        is seen finished, never made again (unless ``force``). A take another consumer
        follows is left to it while its follow lease is live (``consumer.follow``)."""
        _bind(ref, "claim")
        lease = Lease(
            self.storage, self.keys.lock_key(ref), self.owner, self.settings.lease_seconds
        )
        try:
            await lease.acquire()
        except LeaseHeld as e:
            seen = await look(self.storage, self.keys, ref)
            if seen is None or seen.finished:
                return Outcome("skipped", "marker gone" if seen is None else "already final")
            if seen.claimed:
                log.info("take claimed by another consumer", owner=e.owner)
                return Outcome("skipped", f"claimed by {e.owner}")
            log.info("take is being processed elsewhere", reason=str(e))
            return Outcome("retry", str(e), delay=lease_wait_delay(e.seconds_left))
        lease.keep_renewed()
        claimed = False
        try:
            follower = None if force else await self._followed_elsewhere(ref)
            if follower is not None:
                log.info("take followed by another consumer; left to it", owner=follower[0])
                return Outcome("retry", f"followed by {follower[0]}", lease_wait_delay(follower[1]))
            seen = await look(self.storage, self.keys, ref)
            options = await read_marker(self.storage, seen.marker.key) if seen is not None else None
            if seen is None or options is None:
                log.info("marker gone; nothing to do")
                return Outcome("skipped", "marker gone")
            if seen.finished and not force:
                log.info("already processed with the same input", state=seen.previous["state"])
                return Outcome("skipped", f"already {seen.previous['state']}")
            wait = seen.retry_in(time.time())
            if wait > 0 and not force:  # a failed attempt's backoff, whoever delivered it
                log.info("take retried too soon; waiting", seconds_left=round(wait))
                return Outcome("retry", "waiting to try again", delay=wait)
            status = StatusRecord(
                self.storage,
                self.keys.status_key(ref),
                lease,
                ref,
                fingerprint=seen.fingerprint,
                previous=seen.previous if seen.same_input else {},
                engine=self.settings.whisper_engine,
            )
            missing: dict[str, list[ChunkRange]] = {}
            if isinstance(options, MarkerOptions):
                with contextlib.suppress(TakeError):  # over a limit: the work fails the take
                    missing = missing_in(seen.chunks, options, chunk_limit(self.settings))
            left = self._chunk_wait_left(seen.marker)
            if missing and left > 0:  # nothing claimed: the message waits for the chunks
                return await self._wait_for_chunks(status, MissingChunks(missing), left)
            await status.write("processing", "claimed")
            claimed = True
            return Claim(ref, lease, status, seen.marker, options, seen.chunks)
        finally:
            if not claimed:
                await lease.release()

    async def _followed_elsewhere(self, ref: TakeRef) -> tuple[str, float] | None:
        """The owner of a live follow lease of another consumer, and its seconds left. A
        stale one (its follower died) is removed: nobody else would."""
        key = self.keys.follow_key(ref)
        found = await self.storage.get_bytes(key, max_bytes=LOCK_MAX_BYTES)
        if found is None:
            return None
        owner, expires = read_lock(found[0])
        left = expires - time.time()
        if left <= 0:
            log.info("a stale follow lease removed", stale_owner=owner)
            await self.storage.delete(key)
            return None
        return (owner, left) if owner != self.owner else None

    async def work(self, claim: Claim, following: Following | None = None) -> Outcome:
        """Make the claimed take; the lease is released at the end, whatever happens. An
        attempt that ends in neither ``done`` nor ``failed`` says why in the status
        (``last_error``) before the lease goes, so the status never shows a stage that
        is no longer running: the sweep takes the take up again (at ``next_try_at``)."""
        _bind(claim.ref, "work")
        log.info("take started", attempt=claim.status.record.get("attempts"))
        try:
            outcome = await claim.lease.hold(self._settled(claim, following))
        except LeaseLost:
            log.warning("lease lost: the take's work stopped, its new owner finishes it")
            return Outcome("lost", "lease lost")
        except asyncio.CancelledError:  # the drain ran out: another consumer may go on now
            await self._attempt_ended(claim, "interrupted", "the consumer stopped", 0.0)
            raise
        except Exception as e:  # a passing failure (the store, the disk) or a bug, after the claim
            if disk_full(e):
                return await self._wait_for_room(claim, e)
            unexpected = not isinstance(e, StorageError)
            delay = take_retry_delay(
                int(claim.status.record.get("attempts", 1)),
                self.settings.retry_delay_seconds,
                unexpected=unexpected,
            )
            kind = "unexpected" if unexpected else "storage"
            await self._attempt_ended(claim, kind, str(e) or type(e).__name__, delay)
            raise
        finally:
            structlog.contextvars.bind_contextvars(stage="end")
            await claim.lease.release()
        if outcome.state in ("done", "failed"):
            await rebuild_and_announce(self.storage, self.keys, self.notifier, claim.ref)
        return outcome

    async def _settled(self, claim: Claim, following: Following | None) -> Outcome:
        """Every take error ends here, in one branch: retried while it may pass (chunks
        still arriving), else the take fails with the error's kind and message."""
        try:
            return await self._make(claim, following)
        except MissingChunks as e:
            left = self._chunk_wait_left(claim.marker)
            if left > 0:
                return await self._wait_for_chunks(claim.status, e, left)
            return await self._fail(claim, e)
        except TakeError as e:
            if e.retryable:  # the set-up's fault (a model not on disk), not the take's
                return await self._wait_for_setup(claim.status, e)
            return await self._fail(claim, e)

    async def _make(self, claim: Claim, following: Following | None) -> Outcome:
        if isinstance(claim.options, BadMarker):
            raise claim.options
        options = claim.options
        missing = missing_in(claim.chunks, options, chunk_limit(self.settings))
        if missing:  # still missing when the claim was made: the wait is over
            raise MissingChunks(missing)
        take_options = pipeline_options(self.settings, claim.ref, options)
        followed = None
        if following is not None:
            await claim.status.write("processing", "downloading")
            followed = await following.hand_over(claim.chunks, take_options)
        if followed is not None and following is not None:
            work = following.folder
        else:
            work = workdirs.new_folder(self.settings.work_dir, self.owner)
            (work / "chunks").mkdir(parents=True)
        (work / "out").mkdir(exist_ok=True)
        keep = True
        try:
            outcome = await self._produce(claim, take_options, work, followed)
            keep = False
            return outcome
        except TakeError as e:
            keep = e.retryable
            raise
        except OSError as e:
            if disk_full(e):  # its partial files hold the room the next attempt needs
                workdirs.remove(work)
            raise
        finally:
            # Local files stay until every upload succeeded (or the take failed for good):
            # an interrupted or retried attempt keeps them for inspection, until a start-up
            # finds them stale (``consumer.workdirs``). A lost lease's are of no use: the
            # new owner makes the take.
            if claim.lease.lost.is_set() or (not keep and options.cleanup):
                workdirs.remove(work)

    async def _produce(
        self,
        claim: Claim,
        take_options: TakeOptions,
        work: Path,
        followed: Awaitable[TakeResult] | None,
    ) -> Outcome:
        """Download the chunks, make the take in a worker and upload what it made; a take
        followed while it was recorded has its chunks, and its worker, already."""
        status, lease = claim.status, claim.lease
        chunk_dir, out_dir = work / "chunks", work / "out"
        if followed is None:
            await status.write("processing", "downloading")
            for chunk in claim.chunks:
                # chunk.name was checked by parse_chunk_name: safe as a file name.
                await self.storage.download(chunk.key, chunk_dir / chunk.name)
        await status.write("processing", "processing")
        started = time.monotonic()
        progress = work / "progress.json"
        reporter = asyncio.create_task(self._report(status, progress))
        try:
            if followed is not None:
                result = await followed
            else:
                async with self.worker_slot():
                    result = await self.workers.run(
                        chunk_dir, out_dir, work / "tmp", take_options, progress
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
        keys = self.keys.output_keys(claim.ref, self.settings.audio_output)
        for role, path in sorted(result.outputs.items(), key=lambda kv: kv[0] == "transcript"):
            lease.check()  # never upload beside a new owner
            await self.storage.upload(path, keys[role], content_type(path))
            uploaded[role] = keys[role]
            status.record.setdefault("outputs", {})[role] = {
                "key": keys[role],
                "size": path.stat().st_size,
            }
        summary = result.summary()
        for name in (
            "duration",
            "video",
            "audio",
            "captions",
            "language",
            "engine",
            "model",
            "followed",
        ):
            status.record[name] = summary[name]
        status.record.update(cues=summary["cues"], warnings=summary["warnings"], error=None)
        await lease.renew()  # proves the lease is still ours just before the last write
        await self._final(claim, "done")
        log.info("take done", duration=result.duration, captions=result.captions)
        await self._notify(claim, "completed", uploaded, None)
        return Outcome("done")

    def _chunk_wait_left(self, marker: ObjectInfo) -> float:
        """Seconds left to wait for late chunks: CHUNK_WAIT_SECONDS from the marker's time."""
        return marker.modified + self.settings.chunk_wait_seconds - time.time()

    async def _report(self, status: StatusRecord, progress: Path, every: float = 5.0) -> None:
        """Copy the worker's stage and progress into the status record now and then."""
        while True:
            await asyncio.sleep(every)
            with background.survived("progress report"):  # a report missed, not the take
                found = read_progress(progress)
                if found is not None:
                    status.record["progress"] = found.get("progress")
                    try:
                        await status.write("processing", f"processing: {found.get('stage')}")
                    except StorageError:
                        pass
                    except LeaseLost:
                        return

    async def _wait_for_chunks(
        self, status: StatusRecord, error: TakeError, left: float
    ) -> Outcome:
        status.record["error"] = {"kind": error.kind, "message": str(error), "retrying": True}
        await status.write("processing", WAITING_FOR_CHUNKS)
        log.info("waiting for chunks", error=str(error), seconds_left=round(left))
        return Outcome("retry", str(error), delay=chunk_wait_delay(left))

    async def _wait_for_setup(self, status: StatusRecord, error: TakeError) -> Outcome:
        """A configuration fault is never the take's permanent failure: the take stays
        ``processing`` with the error, its lease is released, and the sweep runs it again."""
        attempts = int(status.record.get("attempts", 1))
        delay = take_retry_delay(attempts, self.settings.retry_delay_seconds)
        status.record["error"] = {"kind": error.kind, "message": str(error), "retrying": True}
        # The backoff holds for the sweep too (the claim waits for it), not only for the
        # message: a model missing for a day is not loaded again every sweep.
        status.record["next_try_at"] = _iso(time.time() + delay)
        await status.write("processing", "waiting for the set-up")
        log.error("the set-up stops this take; will retry", error_kind=error.kind, error=str(error))
        return Outcome("retry", str(error), delay=delay)

    async def _wait_for_room(self, claim: Claim, error: BaseException) -> Outcome:
        """A full WORK_DIR (no space, a quota, a file-size limit) is this machine's passing
        fault, never the take's: like the store's, the attempt is recorded (``last_error``,
        ``next_try_at``) with a backoff, so a disk that stays full is not filled again
        every sweep, and the sweep takes the take up again. The error names the setting,
        never this machine's path; its partial files are gone already (``_make``)."""
        message = f"no room to write in WORK_DIR: {reason(error)}"
        attempts = int(claim.status.record.get("attempts", 1))
        delay = take_retry_delay(attempts, self.settings.retry_delay_seconds)
        during = claim.status.record.get("stage")  # downloading, or processing (a worker)
        log.error(NO_ROOM, error_kind="disk_full", error=message, during=during)
        await self._attempt_ended(claim, "disk_full", message, delay)
        return Outcome("retry", message, delay=delay)

    async def _fail(self, claim: Claim, error: TakeError) -> Outcome:
        # A client's bad marker is the client's problem, not the service's: a warning.
        report = log.warning if isinstance(error, BadMarker) else log.error
        report("take failed", error_kind=error.kind, error=str(error))
        claim.status.record["error"] = {"kind": error.kind, "message": str(error)}
        await self._final(claim, "failed")
        await self._notify(claim, "failed", {}, str(error))
        return Outcome("failed", str(error))

    async def _attempt_ended(self, claim: Claim, kind: str, message: str, delay: float) -> None:
        """Record an attempt that did not finish the take, and when it may be tried again
        (the claim refuses it before then); best effort, as the attempt is over anyway."""
        now = time.time()
        claim.status.record["last_error"] = {"kind": kind, "message": message, "at": _iso(now)}
        claim.status.record["next_try_at"] = _iso(now + delay)
        claim.status.record.pop("progress", None)
        stage = "interrupted" if kind == "interrupted" else "retrying"
        try:
            await asyncio.wait_for(claim.status.write("processing", stage), ATTEMPT_WRITE_SECONDS)
        except (TimeoutError, LeaseLost, StorageError) as e:
            log.warning("attempt not recorded", error=str(e) or type(e).__name__)

    async def _final(self, claim: Claim, state: str) -> None:
        """The final status, written before the notice is sent: a receiver that reads
        the status on a notice finds it final. It says the notice is on its way."""
        if self.notifier is not None:
            claim.status.record["webhook"] = {"state": "sending"}
        await claim.status.write(state, state)

    async def _notify(
        self, claim: Claim, state: str, outputs: dict[str, str], error: str | None
    ) -> None:
        """Send the notice, then write its outcome into the status (a second write of the
        final record). Nothing here fails the take: it is final already."""
        if self.notifier is None:
            return
        try:
            notice = await self.notifier.notify(claim.ref, state, outputs, error)
        except Exception as e:  # a bug in sending must not undo a finished take
            log.exception("webhook failed unexpectedly")
            notice = {"state": "failed", "error": f"{type(e).__name__}: {e}"}
        claim.status.record["webhook"] = notice
        try:
            await claim.status.rewrite()
        except (LeaseLost, StorageError) as e:
            log.warning("webhook outcome not recorded", error=str(e) or type(e).__name__)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _bind(ref: TakeRef, stage: str) -> None:
    """Every log line of this task names the take (the task's own context)."""
    structlog.contextvars.bind_contextvars(
        meeting_id=ref.meeting_id, take=ref.take, user_id=ref.user_id, stage=stage
    )
