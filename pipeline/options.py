"""How a take is encoded, and the limits that guard the service: plain values.

Kept apart from the media modules so that the consumer can build them without loading
PyAV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.errors import LimitExceeded

AudioOutput = Literal["wav", "m4a", "none"]


@dataclass(frozen=True)
class MediaOptions:
    """How to encode, and the limits that guard the service."""

    preset: str = "veryfast"
    crf: int = 23
    audio_bitrate: int = 128_000
    audio_output: AudioOutput = "wav"
    speech: bool = True
    max_duration: float | None = None
    max_width: int | None = None
    max_height: int | None = None

    def check_size(self, width: int, height: int) -> None:
        """Raise ``LimitExceeded`` for a picture over the resolution limit."""
        if (self.max_width and width > self.max_width) or (
            self.max_height and height > self.max_height
        ):
            raise LimitExceeded(
                f"video is {width}x{height}, over the limit of {self.max_width}x{self.max_height}"
            )
