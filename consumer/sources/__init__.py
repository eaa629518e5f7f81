"""Event sources: where the service hears that objects were written.

Each source delivers ``Message``s holding ``ObjectEvent``s, at least once: a message may
come again (after a visibility timeout, or to a second consumer), so the take job, not
the source, makes the work happen once. A message is acknowledged (gone for good) or
retried after a delay; one that is neither comes back by itself when its lease expires.

A source is a ``Source`` subclass, built with explicit keyword arguments (never the whole
settings: ``consumer.backends`` maps ``SOURCE`` to the class and its arguments).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from consumer.events import ObjectEvent


@dataclass
class Message:
    """One delivery: the events it carries, its attempt number and the source's handle."""

    id: str
    events: list[ObjectEvent]
    attempts: int = 1
    handle: Any = None  # the source's own token: a lease id, a receipt handle, a path
    meta: dict[str, Any] = field(default_factory=dict)


class Source(abc.ABC):
    """The contract every event source keeps. Methods that reach the queue raise
    ``SourceUnavailable`` when it cannot be reached, never anything else."""

    name: str = "source"
    #: How many messages the queue said were unacknowledged at the last ``receive``,
    #: where it says (Cloudflare's ``message_backlog_count``); None where it does not.
    backlog: int | None = None

    @abc.abstractmethod
    async def receive(self, max_messages: int) -> list[Message]:
        """Up to ``max_messages`` messages, hidden from other consumers until settled or
        until their visibility runs out; an empty list when there are none right now."""

    @abc.abstractmethod
    async def ack(self, messages: list[Message]) -> None:
        """Remove the messages for good (a late or repeated ack is harmless)."""

    @abc.abstractmethod
    async def retry(self, message: Message, delay: float) -> None:
        """Deliver the message again in about ``delay`` seconds (it may spend an attempt)."""

    async def extend(self, message: Message, seconds: float) -> None:  # noqa: B027
        """Keep the message hidden for ``seconds`` more, where the queue can (else nothing)."""

    async def check(self) -> None:  # noqa: B027
        """Reach the queue without changing it; raise ``SourceError`` saying what is wrong."""

    async def close(self) -> None:  # noqa: B027
        """Release connections and watchers; nothing is received afterwards."""
