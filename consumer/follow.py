"""Following a take while it is recorded (issue 13): the work moves from the marker to the
chunks, so that when the take ends only its tail is left to do.

A consumer that hears of a take's chunks (an event for a chunk, or the sweep finding
chunks and no marker) takes the take's follow lease (``{take prefix}.follow``, a lease
like the take's own), starts the first pass in a worker on a folder of its own
(``pipeline.live``) and lists the take's prefix every FOLLOW_POLL_SECONDS, sooner when an
event wakes it: each new chunk is downloaded once, whole, into the folder, where the
worker reads it as it lands. Events are only wake-ups; the listing is the truth, so it
does not matter which consumer hears of which chunk.

When the marker appears, the follower claims the take as any consumer does (the take's
lease, status ``processing``) and hands its folder to the take's job (``hand_over``):
the job downloads what is still missing, says the take has ended, and the worker makes
the rest. Until then, a consumer that gets the marker's message leaves the take to its
follower (``TakeJob.claim``) and looks again when the follow lease would run out.

A follower gives the take up, releasing its lease and removing its folder, and the take
is made whole at its marker as if it had never been followed:

- when a chunk it downloaded changes or goes (uploaded again: its ETag or size differ);
- when neither a chunk nor the marker came for CHUNK_WAIT_SECONDS: an abandoned take;
- when its worker fails, or its lease is lost;
- when the service needs its worker for a take that has ended (a follower never keeps a
  finished take waiting), or stops.

A follower that gives up after the marker came makes the take whole itself, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from consumer import metrics, workdirs
from consumer.errors import LeaseHeld, StorageError
from consumer.keys import TakeRef
from consumer.lease import Lease
from consumer.marker import MarkerOptions, pipeline_options
from consumer.status import listing
from consumer.storage import ObjectInfo
from consumer.take import Claim, Outcome, TakeJob
from pipeline.chunks import parse_chunk_name
from pipeline.live import write_final
from pipeline.process import TakeOptions, TakeResult

log = structlog.get_logger(__name__)


class GaveUp(Exception):
    """The take is no longer followed; the message says why."""


@dataclass(eq=False)
class Follower:
    """One take followed by this consumer while it is recorded (see the module)."""

    job: TakeJob
    ref: TakeRef
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    folder: Path = field(init=False)
    known: dict[str, ObjectInfo] = field(default_factory=dict)  # chunks downloaded, by name
    marker_seen: bool = False
    handed_over: bool = False
    started: float = field(default_factory=time.monotonic)
    _live: asyncio.Task[TakeResult] | None = None

    def __post_init__(self) -> None:
        self.folder = workdirs.new_folder(self.job.settings.work_dir, self.job.owner)

    @property
    def chunks(self) -> Path:
        return self.folder / "chunks"

    @property
    def making(self) -> bool:
        """Whether the take has ended and is being made: no longer a follower to give up."""
        return self.handed_over

    @property
    def holds_worker(self) -> bool:
        """Whether it holds a worker, or is about to: from its start until its first pass
        has ended."""
        return self._live is None or not self._live.done()

    @contextlib.asynccontextmanager
    async def following(self) -> AsyncIterator[Lease]:
        """Hold the follow lease and the folder while the block runs; ``GaveUp`` when
        another consumer follows the take. Everything is let go at the end."""
        settings = self.job.settings
        key = self.job.keys.follow_key(self.ref)
        lease = Lease(self.job.storage, key, self.job.owner, settings.lease_seconds)
        try:
            await lease.acquire()
        except LeaseHeld as e:
            raise GaveUp(f"followed by {e.owner}") from None
        lease.keep_renewed()
        metrics.FOLLOWING.inc()
        try:
            self.chunks.mkdir(parents=True)
            yield lease
        finally:
            metrics.FOLLOWING.dec()
            await self._stop_live()
            await lease.release()
            if not self.handed_over:
                workdirs.remove(self.folder)

    async def until_claimed(self, claim: Callable[[], Awaitable[Claim | Outcome]]) -> Claim:
        """Follow the take until its marker is claimed (``claim``: the take job's claim);
        ``GaveUp`` otherwise (see the module)."""
        settings = self.job.settings
        expected = pipeline_options(settings, self.ref, MarkerOptions.model_validate({}))
        self._live = asyncio.ensure_future(
            self.job.workers.follow(self.folder, expected, self.folder / "progress.json")
        )
        last_new = time.monotonic()
        retry_at = 0.0
        while True:
            try:
                marker, chunks = await listing(self.job.storage, self.job.keys, self.ref)
                if await self._download_new(chunks):
                    last_new, retry_at = time.monotonic(), 0.0  # a new chunk: claim again
            except StorageError as e:  # the next look tries again
                log.warning("following: the bucket failed", error=str(e))
                marker = None
            if self._live.done():
                raise GaveUp(f"the worker stopped: {_error_of(self._live)}")
            now = time.monotonic()
            if marker is not None:
                self.marker_seen = True
                if now >= retry_at:
                    step = await claim()
                    if isinstance(step, Claim):
                        return step
                    if step.state != "retry":
                        raise GaveUp(f"the take needs no follower: {step.reason}")
                    retry_at = now + min(step.delay, settings.chunk_wait_seconds)
            elif now - last_new > settings.chunk_wait_seconds:
                raise GaveUp(
                    f"abandoned: no chunk and no marker for {settings.chunk_wait_seconds:g} s"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), settings.follow_poll_seconds)
            self.wake.clear()

    async def _download_new(self, chunks: list[ObjectInfo]) -> bool:
        """Download the chunks not downloaded yet, in index order, each whole; ``GaveUp``
        when one already downloaded changed or went. True when any was new."""
        listed = {chunk.name: chunk for chunk in chunks}
        for name, had in self.known.items():
            now = listed.get(name)
            if now is None:
                raise GaveUp(f"{name} was removed while the take was recorded")
            if (now.etag, now.size) != (had.etag, had.size):
                raise GaveUp(f"{name} was uploaded again while the take was recorded")
        new = sorted(
            (c for c in chunks if c.name not in self.known),
            key=lambda c: (parse_chunk_name(c.name) or ("", 0))[::-1],
        )
        for chunk in new:
            await self._download(chunk)
        return bool(new)

    async def _download(self, chunk: ObjectInfo) -> None:
        """One chunk into the folder, appearing whole (a rename): the worker reads it as
        soon as it is there."""
        part = self.chunks / f".{chunk.name}.part"
        await self.job.storage.download(chunk.key, part)
        part.replace(self.chunks / chunk.name)
        self.known[chunk.name] = chunk

    async def hand_over(
        self, chunks: list[ObjectInfo], options: TakeOptions
    ) -> Awaitable[TakeResult] | None:
        """The claimed take's first pass, to be awaited for its result, once the chunks
        missing are downloaded and the take's end is said; None when what was followed
        is not the claimed take (then the job makes it whole, in a folder of its own)."""
        listed = {chunk.name: chunk for chunk in chunks}
        changed = [
            name
            for name, had in self.known.items()
            if name not in listed or (listed[name].etag, listed[name].size) != (had.etag, had.size)
        ]
        if changed or self._live is None or self._live.done():
            why = f"{changed[0]} changed" if changed else "its worker stopped"
            log.info("the followed take is made whole", reason=why)
            await self._stop_live()
            return None
        for chunk in chunks:
            if chunk.name not in self.known:
                await self._download(chunk)
        write_final(self.chunks, options)
        self.handed_over = True
        log.info(
            "take ended while followed",
            chunks=len(chunks),
            followed_seconds=round(time.monotonic() - self.started, 1),
        )
        return self._live

    def marker_event(self) -> None:
        """The take's marker was heard of (its message is acknowledged: this follower
        carries the take now)."""
        self.marker_seen = True
        self.wake.set()

    async def _stop_live(self) -> None:
        """Tell the worker to give the take up and wait until it has (its worker is
        wanted, its folder is about to go): ``WorkerPool`` waits, once cancelled."""
        if self._live is None or self._live.done():
            return
        self._live.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._live


def _error_of(task: asyncio.Task[TakeResult]) -> str:
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return f"{type(error).__name__}: {error}" if error is not None else "it ended early"
