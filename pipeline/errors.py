"""What can be wrong with a take, as exceptions that say it in one line.

Every error has a ``kind`` (a short, stable word for status records and metrics) and says
whether trying again later can help (``retryable``): chunks can still be arriving, but a
corrupt file stays corrupt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

# An absolute path in a message, as FFmpeg and the OS write them: '/tmp/w/chunks/video_3.webm'.
_PATH = re.compile(r"'?/(?:[^/\s']+/)+([^/\s']+)'?")


def reason(error: BaseException) -> str:
    """What went wrong, without the local file name FFmpeg and the OS add to their
    messages: a status record names the chunk, never this machine's paths."""
    text = getattr(error, "strerror", None) or str(error)
    return _PATH.sub(r"\1", text)


class TakeError(Exception):
    """A take that cannot be made as it is."""

    kind = "bad_take"
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadChunks(TakeError):
    """The chunks are not a take: not media, empty, or mixing ways of joining."""

    kind = "bad_chunks"


class NoMedia(TakeError):
    """The take has neither video nor audio (a take without video is made from its audio)."""

    kind = "no_media"


class CorruptMedia(TakeError):
    """The media cannot be demuxed or decoded."""

    kind = "corrupt_media"


class LimitExceeded(TakeError):
    """The take is over one of the service's limits (duration, resolution, bytes)."""

    kind = "limit_exceeded"


class ChunkRange(NamedTuple):
    """Chunk indices ``first`` to ``last``, both included."""

    first: int
    last: int

    @property
    def chunks(self) -> int:
        """How many chunks the range holds."""
        return self.last - self.first + 1

    def __str__(self) -> str:
        if self.last - self.first > 1:
            return f"{self.first}-{self.last}"
        return ", ".join(str(i) for i in range(self.first, self.last + 1))


class MissingChunks(TakeError):
    """Chunks are missing; they may still be uploading, so this one can be retried.

    ``missing`` holds, per kind, the first ``MAX_RANGES`` runs of missing indices, and
    ``more`` how many chunks the runs left out hold: the message and the status record
    stay small however many chunks a marker promises.
    """

    kind = "missing_chunks"
    retryable = True
    MAX_RANGES = 5

    def __init__(
        self, missing: Mapping[str, Sequence[ChunkRange]], more: Mapping[str, int] | None = None
    ) -> None:
        self.missing = {k: tuple(v[: self.MAX_RANGES]) for k, v in missing.items() if v}
        if more is None:  # else rebuilt from a pickle: ``missing`` is already cut short
            more = {k: sum(r.chunks for r in v[self.MAX_RANGES :]) for k, v in missing.items()}
        self.more = {kind: n for kind, n in more.items() if n}
        parts = []
        for kind, ranges in self.missing.items():
            more_ = f" and {self.more[kind]} more" if kind in self.more else ""
            parts.append(f"{kind} {', '.join(map(str, ranges))}{more_}")
        super().__init__("missing chunks: " + "; ".join(parts))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.missing, self.more))


class TranscriptionError(TakeError):
    """The Whisper model could not be found or loaded: a fault of the set-up, not of the
    take, so trying again (once the model is in place) can help."""

    kind = "transcription"
    retryable = True
