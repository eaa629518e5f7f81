"""What can be wrong with a take, as exceptions that say it in one line.

Every error has a ``kind`` (a short, stable word for status records and metrics) and says
whether trying again later can help (``retryable``): chunks can still be arriving, but a
corrupt file stays corrupt.
"""

from __future__ import annotations

from typing import Any


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
    """The chunks are not a take: not media, empty, or mixing layouts."""

    kind = "bad_chunks"


class NoVideo(TakeError):
    """The take has no video at all."""

    kind = "no_video"


class CorruptMedia(TakeError):
    """The media cannot be demuxed or decoded."""

    kind = "corrupt_media"


class LimitExceeded(TakeError):
    """The take is over one of the service's limits (duration, resolution, bytes)."""

    kind = "limit_exceeded"


class MissingChunks(TakeError):
    """Chunks are missing; they may still be uploading, so this one can be retried."""

    kind = "missing_chunks"
    retryable = True

    def __init__(self, missing: dict[str, list[int]]) -> None:
        self.missing = {k: sorted(v) for k, v in missing.items() if v}
        parts = [f"{kind} {', '.join(map(str, idx))}" for kind, idx in self.missing.items()]
        super().__init__("missing chunks: " + "; ".join(parts))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.missing,))


class TranscriptionError(TakeError):
    """The Whisper model could not be found or loaded: a fault of the set-up, not of the
    take, so trying again (once the model is in place) can help."""

    kind = "transcription"
    retryable = True
