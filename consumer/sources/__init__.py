"""Event sources: where the service hears that objects were written.

Each source delivers ``Message``s holding ``ObjectEvent``s, at least once: a message may
come again (after a visibility timeout, or to a second consumer), so the take job, not
the source, makes the work happen once. A message is acknowledged (gone for good) or
retried after a delay; one that is neither comes back by itself when its lease expires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from consumer.events import ObjectEvent


@dataclass
class Message:
    id: str
    events: list[ObjectEvent]
    attempts: int = 1
    handle: Any = None  # the source's own token: a lease id, a receipt handle, a path
    meta: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    name: str

    async def receive(self, max_messages: int) -> list[Message]:
        """Up to ``max_messages``; an empty list when there are none right now."""
        ...

    async def ack(self, messages: list[Message]) -> None: ...

    async def retry(self, message: Message, delay: float) -> None: ...

    async def extend(self, message: Message, seconds: float) -> None:
        """Keep the message hidden while its take runs (where the source can)."""
        ...

    async def check(self) -> None:
        """Reach the queue without changing it; raises with what is wrong."""
        ...

    async def close(self) -> None: ...
