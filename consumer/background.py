"""Background loops (the sweep, the progress reporter, the watchdog, the probe) outlive
their own errors: a round that fails is logged with its traceback and the loop goes on.
A loop that died would do so silently, and its stored exception would come back out of
the shutdown (exit 1, a traceback, the cleanup after it skipped): issue 11, item 2.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")


class Interrupted(Exception):
    """The event came first: the work was cancelled (``until_set``)."""


async def until_set(event: asyncio.Event, work: Awaitable[T]) -> T:
    """``work``'s result, unless ``event`` is set first: then ``work`` is cancelled and
    waited for, and ``Interrupted`` is raised. Work that finished first wins a tie."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise Interrupted
    return task.result()


@contextlib.contextmanager
def survived(loop: str, **fields: Any) -> Iterator[None]:
    """One round of the background loop ``loop``: any error (never a cancellation, which
    is how a loop is stopped) is logged, not raised."""
    try:
        yield
    except Exception:
        log.exception("background loop failed; it goes on", loop=loop, **fields)


async def stop(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait for it; whatever it ended with is logged, never
    raised (a shutdown goes on to its cleanup)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await task
        except Exception:
            log.exception("background loop ended with an error", loop=task.get_name())
