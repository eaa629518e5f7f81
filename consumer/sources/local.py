"""The embedded default: a local folder laid out like the bucket; markers and chunks that
appear are the events (a chunk's wakes the take's follower, see ``consumer.follow``). The
folder is watched (watchfiles), and the reconcile sweep, always on for this source, is the
poll that catches whatever the watch misses. Needs no account."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from pathlib import Path

import structlog

from consumer.errors import SourceError
from consumer.events import ObjectEvent
from consumer.sources import Message, Source
from pipeline.chunks import parse_chunk_name

log = structlog.get_logger(__name__)


class LocalFolder(Source):
    name = "local"

    def __init__(self, *, root: Path, marker_name: str) -> None:
        self.root = root.resolve()
        self.marker_name = marker_name
        self._events: asyncio.Queue[str] = asyncio.Queue()
        self._later: list[tuple[float, int, Message]] = []
        self._order = itertools.count()
        self._watcher: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def _watch(self) -> None:
        from watchfiles import Change, awatch

        try:
            async for changes in awatch(self.root, stop_event=self._stop, recursive=True):
                for change, path in changes:
                    name = Path(path).name
                    if change != Change.deleted and (
                        name == self.marker_name or parse_chunk_name(name) is not None
                    ):
                        await self._events.put(path)
        except Exception as e:  # the sweep still finds every marker
            log.warning("folder watch stopped; relying on the sweep", error=str(e))

    async def receive(self, max_messages: int) -> list[Message]:
        if self._watcher is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._watcher = asyncio.create_task(self._watch())
        out: list[Message] = []
        now = time.monotonic()
        while self._later and self._later[0][0] <= now and len(out) < max_messages:
            message = heapq.heappop(self._later)[2]
            message.attempts += 1
            out.append(message)
        while not self._events.empty() and len(out) < max_messages:
            path = Path(self._events.get_nowait())
            key = path.relative_to(self.root).as_posix()
            out.append(Message(id=key, events=[ObjectEvent(key, created=True)], handle=key))
        return out

    async def ack(self, messages: list[Message]) -> None:
        """Nothing to remove: the folder's events live only in this process."""

    async def retry(self, message: Message, delay: float) -> None:
        heapq.heappush(self._later, (time.monotonic() + delay, next(self._order), message))

    async def check(self) -> None:
        if not self.root.is_dir():
            raise SourceError(f"{self.root} does not exist yet (it is made on start)")

    async def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._watcher, 5)
