"""The object store's contract: what the take job, the lease and the sweep rely on.

Every implementation speaks the same small interface, with the conditional writes the
lease needs: ``put_bytes(..., if_none_match=True)`` creates only if absent and
``if_match=etag`` replaces only that version; a failed condition raises
``PreconditionFailed``. Any other failure of the store raises ``StorageError`` (or a
subclass): the caller decides whether to retry.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consumer import safejson

CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".wav": "audio/wav",
    ".srt": "application/x-subrip",
    ".vtt": "text/vtt; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: its key, size, ETag (unquoted) and last-modified time (epoch s)."""

    key: str
    size: int
    etag: str
    modified: float = 0.0

    @property
    def name(self) -> str:
        """The last part of the key: ``video_0.webm`` of ``recordings/m/t/u/video_0.webm``."""
        return self.key.rsplit("/", 1)[-1]


def content_type(path: Path | str) -> str:
    """The Content-Type an output is uploaded with, from its suffix."""
    return CONTENT_TYPES.get(Path(path).suffix, "application/octet-stream")


class Storage(abc.ABC):
    """An object store. Keys are ``/``-separated; ETags are compared unquoted."""

    @abc.abstractmethod
    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, all pages of the listing."""

    @abc.abstractmethod
    async def get_bytes(self, key: str, max_bytes: int | None = None) -> tuple[bytes, str] | None:
        """The object's body and ETag; None if absent; ``ObjectTooLarge`` over ``max_bytes``."""

    @abc.abstractmethod
    async def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/json",
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> str:
        """Write the object and return its new ETag, under the condition given (if any)."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the object; removing one that is absent is not an error."""

    @abc.abstractmethod
    async def download(self, key: str, path: Path) -> None:
        """Copy the object into the local file ``path`` (streamed, whatever its size)."""

    @abc.abstractmethod
    async def upload(self, path: Path, key: str, content_type: str) -> None:
        """Store the local file ``path`` at ``key`` with its Content-Type (any size)."""

    async def close(self) -> None:  # noqa: B027 - optional: a no-op unless a store has a client
        """Release connections; the store may be used again afterwards (it reconnects)."""


async def get_json(storage: Storage, key: str, max_bytes: int = 1 << 20) -> dict[str, Any] | None:
    """A JSON object from the store; None when it is absent or not a JSON object."""
    found = await storage.get_bytes(key, max_bytes=max_bytes)
    if found is None:
        return None
    try:
        value = safejson.loads(found[0])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
