"""Find, classify and order a take's chunks.

A take's chunks are ``video_{n}``, ``audio_{n}`` or ``av_{n}`` with ``.webm``, ``.mkv`` or
``.mp4``, ordered by the integer ``n`` (zero padding allowed), starting at 0 or 1. The
chunks of one kind are either one recorder's stream cut into pieces (``SPLIT``: only the
first has a header, their bytes concatenated are the stream) or a recorder restarted per
chunk (``RESTARTED``: every chunk is a whole file with timestamps starting near 0). Which
one is read from the chunks' first bytes, per kind, per take.
"""

from __future__ import annotations

import enum
import functools
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from pipeline.errors import BadChunks, ChunkRange, LimitExceeded, MissingChunks, NoMedia

# ASCII digits only (``\d`` takes any script's: "video_٣" would be chunk 3), any zero
# padding, nine digits of value (a bound: see ``missing_ranges``); ``fullmatch``, as ``$``
# would let a trailing newline through into a local file name.
CHUNK_NAME = re.compile(r"(?P<kind>video|audio|av)_0*(?P<index>[0-9]{1,9})\.(?P<ext>webm|mkv|mp4)")
EBML_MAGIC = b"\x1a\x45\xdf\xa3"


class Join(enum.StrEnum):
    """How a kind's chunks join: one stream cut in pieces, or a recording per chunk."""

    SPLIT = "split"
    RESTARTED = "restarted"


@dataclass(frozen=True)
class Chunk:
    kind: str
    index: int
    path: Path
    size: int


class TrackSource(Protocol):
    """A track as the media pass reads it: its chunks in order (``feed``), from the first,
    which is on disk before reading starts. All of them are on disk (``Track``), or they
    land while the track is read (``pipeline.live``: a take followed while it is recorded,
    whose ``feed`` waits for each chunk); ``size`` is the bytes fed so far, the track's own
    once it has been read to its end."""

    @property
    def kind(self) -> str: ...

    @property
    def join(self) -> Join: ...

    @property
    def first(self) -> Chunk: ...

    @property
    def size(self) -> int: ...

    def feed(self) -> Iterator[Chunk]: ...


@dataclass(frozen=True)
class Track:
    """The chunks of one kind, in order, and how they join."""

    kind: str
    chunks: tuple[Chunk, ...]
    join: Join

    @property
    def paths(self) -> list[Path]:
        return [c.path for c in self.chunks]

    @property
    def first(self) -> Chunk:
        return self.chunks[0]

    @functools.cached_property
    def size(self) -> int:
        return sum(c.size for c in self.chunks)

    def feed(self) -> Iterator[Chunk]:
        return iter(self.chunks)


T = TypeVar("T", bound=TrackSource, covariant=True)


@dataclass(frozen=True)
class ChunkPlan(Generic[T]):
    """What the take is made of: video (or av) and audio tracks, and what was noticed.
    A take without video (the camera off) has audio only. Its tracks are ``Track``s
    (``plan_take``), or tracks still being recorded (``pipeline.live``)."""

    video: T | None
    audio: T | None
    warnings: list[str] = field(default_factory=list)

    @property
    def tracks(self) -> list[T]:
        return [t for t in (self.video, self.audio) if t is not None]

    @property
    def total_bytes(self) -> int:
        return sum(t.size for t in self.tracks)


def parse_chunk_name(name: str) -> tuple[str, int] | None:
    """``("video", 3)`` for ``video_003.webm``; None for anything that is not a chunk."""
    match = CHUNK_NAME.fullmatch(name)
    if match is None:
        return None
    return match["kind"], int(match["index"])


def has_header(path: Path) -> bool:
    """Whether a file starts like a whole media file (Matroska/WebM or MP4)."""
    with path.open("rb") as f:
        head = f.read(12)
    return head.startswith(EBML_MAGIC) or head[4:8] in (b"ftyp", b"styp")


def find_chunks(folder: Path) -> dict[str, list[Chunk]]:
    """The chunks in a folder by kind, ordered by index; other files are ignored."""
    found: dict[str, list[Chunk]] = {}
    for path in folder.iterdir():
        parsed = parse_chunk_name(path.name)
        if parsed is None or not path.is_file():
            continue
        kind, index = parsed
        found.setdefault(kind, []).append(Chunk(kind, index, path, path.stat().st_size))
    for kind, chunks in found.items():
        chunks.sort(key=lambda c: c.index)
        seen = [c.index for c in chunks]
        if len(set(seen)) != len(seen):
            raise BadChunks(f"two {kind} chunks have the same index ({_duplicates(seen)})")
    return found


def _duplicates(indices: list[int]) -> str:
    return listed([str(i) for i, n in sorted(Counter(indices).items()) if n > 1])


def listed(names: list[str], most: int = 3) -> str:
    """The first ``most`` names and how many more: a message stays one short line
    however many chunks a take has."""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def missing_ranges(indices: Iterable[int], expected: int | None) -> list[ChunkRange]:
    """The runs of indices absent from a numbering that starts at 0 or 1 and has
    ``expected`` members (without it, up to the highest index present). Worked out from
    the indices present, never one entry per missing chunk: a marker may promise a
    million chunks, or a chunk be named ``video_10000000``."""
    present = sorted(set(indices))
    start = 1 if present and present[0] == 1 else 0
    stop = start + expected if expected is not None else (present[-1] + 1 if present else 0)
    gaps = []
    following = start  # the index that should come next
    for index in present:
        if index >= stop:
            break
        if index > following:
            gaps.append(ChunkRange(following, index - 1))
        following = index + 1
    if following < stop:
        gaps.append(ChunkRange(following, stop - 1))
    return gaps


def missing_chunks(
    present: Mapping[str, list[int]],
    expected_video: int | None,
    expected_audio: int | None,
    *,
    max_chunks: int | None = None,
) -> dict[str, list[ChunkRange]]:
    """The missing runs of each kind that misses some, the video (or av) kind first.

    ``present`` is the indices found per kind. Expected counts (from the marker) are what
    the take must have; without them, a hole in the indices is missing too. ``max_chunks``
    (the longest take times the chunks a second a client may send) bounds both: a count or
    an index past it is ``LimitExceeded``, not a wait for chunks that will never come.
    """
    video_kind = "av" if "av" in present else "video"
    expected = {video_kind: expected_video, "audio": expected_audio}
    if max_chunks is not None:
        _check_bounds(present, expected, max_chunks)
    kinds = {*present, *(kind for kind, count in expected.items() if count is not None)}
    missing = {}
    for kind in sorted(kinds, key=lambda k: (k != video_kind, k)):
        gone = missing_ranges(present.get(kind, []), expected.get(kind))
        if gone:
            missing[kind] = gone
    return missing


def _check_bounds(
    present: Mapping[str, list[int]], expected: Mapping[str, int | None], max_chunks: int
) -> None:
    for kind, count in expected.items():
        if count is not None and count > max_chunks:
            raise LimitExceeded(
                f"the marker expects {count} {kind} chunks, over the limit of {max_chunks}"
            )
    for kind, indices in present.items():
        highest = max(indices, default=0)
        if highest > max_chunks:  # numbering may start at 1, so index max_chunks is fine
            raise LimitExceeded(
                f"chunk {kind}_{highest} is numbered past the limit of {max_chunks} chunks"
            )


def _track(kind: str, chunks: list[Chunk], warnings: list[str]) -> Track:
    first = chunks[0]
    if first.size == 0:
        raise BadChunks(f"first {kind} chunk {first.path.name} is empty")
    if not has_header(first.path):
        if first.index > 0:
            raise MissingChunks({kind: [ChunkRange(0, first.index - 1)]})
        raise BadChunks(f"first {kind} chunk {first.path.name} is not media (no header)")
    usable = [first]
    for chunk in chunks[1:]:
        if chunk.size == 0:
            warnings.append(f"{chunk.path.name} is empty and was skipped")
        else:
            usable.append(chunk)
    headers = [has_header(c.path) for c in usable[1:]]
    if headers and all(headers):
        join = Join.RESTARTED
    elif any(headers):
        later = list(zip(usable[1:], headers, strict=True))
        with_header = [c.path.name for c, h in later if h]
        without = [c.path.name for c, h in later if not h]
        raise BadChunks(
            f"{kind} chunks mix a split stream with restarted recordings "
            f"({listed(with_header)} start with a header, {listed(without)} do not)"
        )
    else:
        join = Join.SPLIT
    return Track(kind, tuple(usable), join)


def plan_take(
    folder: Path,
    *,
    expected_video: int | None = None,
    expected_audio: int | None = None,
    max_total_bytes: int | None = None,
    max_chunks: int | None = None,
) -> ChunkPlan[Track]:
    """Read a folder of chunks into a plan, or raise the one error that says what is wrong.

    Expected counts (from the marker) are what the take must have; without them, a hole in
    the indices is missing too. Missing chunks raise ``MissingChunks`` (retryable).
    """
    found = find_chunks(folder)
    if "av" in found and ("video" in found or "audio" in found):
        raise BadChunks("take mixes av_ chunks with separate video_/audio_ chunks")
    video_kind = "av" if "av" in found else "video"
    if video_kind not in found and "audio" not in found:
        raise NoMedia("no video or audio chunks in the take")
    indices = {kind: [c.index for c in chunks] for kind, chunks in found.items()}
    missing = missing_chunks(indices, expected_video, expected_audio, max_chunks=max_chunks)
    if missing:
        raise MissingChunks(missing)
    warnings: list[str] = []
    video = _track(video_kind, found[video_kind], warnings) if video_kind in found else None
    audio = _track("audio", found["audio"], warnings) if "audio" in found else None
    plan = ChunkPlan(video, audio, warnings)
    if max_total_bytes is not None and plan.total_bytes > max_total_bytes:
        raise LimitExceeded(
            f"take is {plan.total_bytes} bytes, over the limit of {max_total_bytes} bytes"
        )
    return plan
