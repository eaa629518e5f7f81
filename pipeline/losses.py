"""Media lost to damage, seen two ways, told in one line per track (or a failure).

Bytes: ``demux.TrackBytes`` counts the bytes of a track the demuxer skipped or left
unread. Time: ``Coverage`` follows where each of the take's streams (its video, its
audio) has media on the take's clock, because bytes miss what is not there any more: a
chunk replaced by a few kilobytes of garbage loses its seconds of media while the bytes
skipped stay under the demuxer's slack. The rule is told in ``encode``'s docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.demux import TrackBytes
from pipeline.errors import CorruptMedia

MAX_LOST_SHARE = 0.5  # of a track's bytes: more fails the take
MAX_GAP = 1.0  # seconds without media inside a stream: a gap
MAX_SHORT_END = 2.0  # seconds a stream may end before the take (recorders stop apart)
LISTED_GAPS = 3  # gaps named in a warning; the rest are counted


@dataclass
class Coverage:
    """Where one stream of the take (``kind``: video or audio) has media, on the take's
    clock: how far it reached, and its gaps longer than ``MAX_GAP`` (the first
    ``LISTED_GAPS`` kept, all of them counted)."""

    kind: str
    until: float | None = None
    gaps: list[tuple[float, float]] = field(default_factory=list)
    gap_count: int = 0
    gap_seconds: float = 0.0

    def add(self, start: float, end: float) -> None:
        """Media from ``start`` to ``end`` (a video frame: its time, twice)."""
        if self.until is not None and start - self.until > MAX_GAP:
            self.gap_count += 1
            self.gap_seconds += start - self.until
            if len(self.gaps) < LISTED_GAPS:
                self.gaps.append((self.until, start))
        self.until = end if self.until is None else max(self.until, end)

    def short_end(self, take_end: float) -> float:
        """How long before the take's end this stream stops, when that is past
        ``MAX_SHORT_END``; else 0."""
        if self.until is None:
            return 0.0
        short = take_end - self.until
        return short if short > MAX_SHORT_END else 0.0


def track_losses(
    track: TrackBytes, streams: Sequence[Coverage], take_end: float, duration: float
) -> str | None:
    """A warning with the seconds a track lost, None when it lost nothing; raises
    ``CorruptMedia`` when it lost more than ``MAX_LOST_SHARE`` of its bytes."""
    share = track.lost / max(1, track.size)
    seconds = share * duration
    if share > MAX_LOST_SHARE:
        raise CorruptMedia(
            f"most of the {track.kind} track cannot be read: {share:.0%} of its bytes, "
            f"about {seconds:.1f} s, lost"
        )
    details = [f"{share:.0%} of its bytes lost"] if track.lost else []
    for stream in streams:
        short = stream.short_end(take_end)
        seconds = max(seconds, stream.gap_seconds + short)
        details += [f"no {stream.kind} from {a:.1f} s to {b:.1f} s" for a, b in stream.gaps]
        if stream.gap_count > len(stream.gaps):
            details.append(f"{stream.gap_count - len(stream.gaps)} more gaps")
        if short:
            details.append(f"the {stream.kind} ends {short:.1f} s before the take")
    if not details:
        return None
    return (
        f"about {seconds:.1f} s of the {track.kind} track could not be read ({'; '.join(details)})"
    )
