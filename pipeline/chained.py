"""A track's chunks opened as containers: one chained stream, or one file at a time.

A split track (one recorder cut into pieces) is demuxed as one stream read through
``ChainReader``, which hands the chunk files to FFmpeg one after another; a restarted track
(a recorder restarted per chunk) is a whole file per chunk, each opened on its own. Both
take the chunks from the track's ``feed`` as they are needed: a track still being
recorded (``pipeline.live``) hands out each chunk when it has landed.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av
import av.error
from av.container import InputContainer

from pipeline.chunks import Join, TrackSource
from pipeline.errors import CorruptMedia, reason

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class ChainReader(io.RawIOBase):
    """Reads files one after another as one stream; the next file is asked for only when
    the one before is read to its end."""

    def __init__(self, paths: Iterable[Path]) -> None:
        super().__init__()
        self._paths = iter(paths)
        self._file: io.BufferedReader | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while True:
            if self._file is None:
                path = next(self._paths, None)
                if path is None:
                    return 0
                self._file = path.open("rb")
            n = self._file.readinto(buffer)
            if n:
                return n
            self._file.close()
            self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


def container_format(path: Path) -> str:
    """The demuxer for a chunk: Safari's MP4, else Matroska (WebM is Matroska)."""
    return "mp4" if path.suffix == ".mp4" else "matroska"


@dataclass(frozen=True)
class Opened:
    """One container of a track, where it starts in the track's bytes, and what a message
    calls it: the chunk's name, or "video chunks" for a split track. Its size is asked
    for when it has been read: a split track still being recorded grows until then."""

    container: InputContainer
    start_byte: int
    name: str
    sized: Callable[[], int]

    @property
    def size(self) -> int:
        return self.sized()


def open_track(track: TrackSource) -> Iterator[Opened]:
    """The track's containers in order; the caller closes each one (``with``)."""
    if track.join is Join.SPLIT:
        reader = ChainReader(chunk.path for chunk in track.feed())
        try:
            container = av.open(reader, "r", format=container_format(track.first.path))
        except av.error.FFmpegError as e:
            raise CorruptMedia(f"{track.kind} chunks cannot be read: {reason(e)}") from e
        yield Opened(container, 0, f"{track.kind} chunks", lambda: track.size)
        return
    start = 0
    for chunk in track.feed():
        try:
            container = av.open(str(chunk.path))
        except av.error.FFmpegError as e:
            raise CorruptMedia(f"{chunk.path.name} cannot be read: {reason(e)}") from e
        yield Opened(container, start, chunk.path.name, functools.partial(int, chunk.size))
        start += chunk.size
