"""The take's clock: items of every track timed in seconds from the take's start.

A restarted recording's timestamps start again near 0: each of its files is shifted to
continue where the previous one ended (``Clock``, ``FileEnd``, ``start_clock``,
``shifted``); a split stream is one container and needs no shift. ``merged`` puts the
tracks in time order, timed from the take's first item.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple, TypeAlias

import av
from av.stream import Stream

from pipeline.errors import LimitExceeded

MS = Fraction(1, 1000)
# What browsers record Opus at; a decoded frame that states no rate is taken to have it.
OPUS_RATE = 48_000

Packet: TypeAlias = "av.Packet[Stream]"
Item: TypeAlias = "av.VideoFrame | av.AudioFrame | Packet"


class Timed(NamedTuple):
    """A decoded frame, or an H.264 packet to copy, at its time in the take (seconds).

    ``order`` counts a track's items: it breaks ties between equal times, so merging
    tracks is deterministic and never compares frames.
    """

    seconds: float
    order: int
    item: Item


@dataclass
class Clock:
    """Where one file sits on the take's clock: it starts where the previous file ended
    (``follows``, None for the first), offset from its own first timestamp."""

    follows: float | None
    offset: float = 0.0


@dataclass
class FileEnd:
    """Where a file's media ends: its last audio sample, or its last frame plus one frame
    interval (video frames carry no reliable duration)."""

    audio_end: float = 0.0
    first_frame: float | None = None
    last_frame: float = 0.0
    frames: int = 0

    def add(self, unit: Timed) -> None:
        item = unit.item
        if isinstance(item, av.AudioFrame):
            length = float(item.samples) / float(item.sample_rate or OPUS_RATE)
            self.audio_end = max(self.audio_end, unit.seconds + length)
            return
        if self.first_frame is None:
            self.first_frame = self.last_frame = unit.seconds
        self.last_frame = max(self.last_frame, unit.seconds)
        self.frames += 1

    def end(self) -> float:
        if self.first_frame is None:
            return self.audio_end
        step = (
            (self.last_frame - self.first_frame) / (self.frames - 1) if self.frames > 1 else 1 / 30
        )
        return max(self.audio_end, self.last_frame + step)


def start_clock(packets: Iterator[Packet], clock: Clock) -> Iterator[Packet]:
    """The packets unchanged; the first timed one sets the file's offset on the clock."""
    started = False
    for packet in packets:
        if not started and packet.pts is not None and packet.time_base is not None:
            start = float(packet.pts * packet.time_base)
            clock.offset = 0.0 if clock.follows is None else clock.follows - start
            started = True
        yield packet


def shifted(items: Iterator[Item], clock: Clock, order: Iterator[int]) -> Iterator[Timed]:
    """Items moved onto the take's clock; copied packets re-timed in milliseconds."""
    for item in items:
        if isinstance(item, av.Packet):
            stamp = item.dts if item.dts is not None else item.pts
            if stamp is None:
                continue
            tb = item.time_base
            dts = float(stamp * tb) + clock.offset
            pts = float(item.pts * tb) + clock.offset if item.pts is not None else dts
            item.dts = round(dts * 1000)
            item.pts = round(pts * 1000)
            item.time_base = MS
            yield Timed(dts, next(order), item)
        elif item.time is not None:
            yield Timed(item.time + clock.offset, next(order), item)


def merged(tracks: list[Iterator[Timed]], max_duration: float | None) -> Iterator[Timed]:
    """The tracks' items in time order, timed from the take's first item."""
    t0: float | None = None
    for unit in heapq.merge(*tracks, key=lambda u: (u.seconds, u.order)):
        if t0 is None:
            t0 = unit.seconds
        seconds = unit.seconds - t0
        if max_duration is not None and seconds > max_duration:
            raise LimitExceeded(f"take is longer than the limit of {max_duration:g} s")
        yield unit._replace(seconds=seconds)
