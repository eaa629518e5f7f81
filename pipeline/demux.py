"""A track's chunks as decoded frames on the take's clock, in small generator stages.

For each container of a track (opened by ``chained``): its packets (``_packets``), the
time the file starts (``timeline.start_clock``), decoded frames or H.264 packets to copy
(``_decoded``), each picture's size checked (``_within_limits``), moved onto the take's
clock (``timeline.shifted``). ``track_units`` chains the stages for one track;
``timeline.merged`` puts the tracks in time order.

Damaged bytes: FFmpeg's Matroska demuxer skips what it cannot parse to the next element
it recognizes, or stops at the end of what it can read, without an error. So every
track counts the bytes its packets did not cover (``TrackBytes.lost``): gaps between
packets, and what is left after the last one, past ``SLACK`` (the container's own
elements between packets are smaller). The encoder turns that into a warning or a
failure (see ``encode``). MP4 is read by its index, not by scanning: no count there.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import av.error
from av.container import InputContainer

from pipeline.chained import Opened, open_track
from pipeline.chunks import TrackSource
from pipeline.errors import BadChunks, reason
from pipeline.options import MediaOptions
from pipeline.timeline import Clock, FileEnd, Item, Packet, Timed, shifted, start_clock


@dataclass
class Reading:
    """What the readers noticed."""

    warnings: list[str] = field(default_factory=list)
    decode_errors: int = 0


# Bytes between packets (or after the last) that are container elements, not lost media:
# cluster and block headers (tens of bytes), cues at the end of a file FFmpeg wrote (a
# few hundred for a short file; browsers write none).
SLACK = 4096


@dataclass
class TrackBytes:
    """How far the demuxer got through one track's bytes (the end of the last packet read,
    never going back: the progress), and how many it skipped or left unread (``lost``).
    One per track: the tracks are read side by side."""

    kind: str
    size: int
    read: int = 0
    lost: int = 0

    def reached(self, position: int) -> None:
        self.read = max(self.read, min(position, self.size))


@dataclass
class _Streams:
    """The streams of one container that the take uses."""

    video: av.VideoStream | None
    audio: av.AudioStream | None

    def selected(self) -> list[av.VideoStream | av.AudioStream]:
        return [s for s in (self.video, self.audio) if s is not None]


def track_units(
    track: TrackSource,
    kinds: set[str],
    copy_video: bool,
    options: MediaOptions,
    reading: Reading,
    counter: TrackBytes,
) -> Iterator[Timed]:
    """Decoded frames (or H.264 packets to copy) of a track, with take-wide times."""
    order = itertools.count()
    follows: float | None = None
    for opened in open_track(track):
        with opened.container as container:
            streams = _streams(container, opened.name, kinds, options)
            clock = Clock(follows)
            ends = FileEnd()
            packets = _packets(container, streams, track, opened, reading, counter)
            decoded = _decoded(start_clock(packets, clock), streams, copy_video, reading)
            for unit in shifted(_within_limits(decoded, options), clock, order):
                ends.add(unit)
                yield unit
            follows = ends.end()
        counter.size = track.size  # a track still being recorded has grown meanwhile
        counter.reached(opened.start_byte + opened.size)


def _streams(
    container: InputContainer, name: str, kinds: set[str], options: MediaOptions
) -> _Streams:
    has_video = bool(container.streams.video)
    if "video" in kinds and not has_video:
        raise BadChunks(f"no video stream in {name}")
    streams = _Streams(
        container.streams.video[0] if "video" in kinds and has_video else None,
        container.streams.audio[0] if "audio" in kinds and container.streams.audio else None,
    )
    if streams.video is not None:
        cc = streams.video.codec_context
        options.check_size(cc.width, cc.height)
        cc.thread_type = "AUTO"  # before the decoder opens; _decoded flushes what it holds
    return streams


def _packets(
    container: InputContainer,
    streams: _Streams,
    track: TrackSource,
    opened: Opened,
    reading: Reading,
    counter: TrackBytes,
) -> Iterator[Packet]:
    """The container's packets of the chosen streams, until its end or a read error.

    Every stream's packets are read, so that the bytes between the chosen ones are known
    to be media, not damage (``TrackBytes.lost``)."""
    chosen = {s.index for s in streams.selected()}
    counts_losses = "matroska" in container.format.name
    covered = 0  # where the last packet ended, in this container's bytes
    packets = container.demux()
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except (av.error.FFmpegError, EOFError, OSError) as e:
            reading.warnings.append(f"{track.kind} stream ends early ({reason(e)})")
            break
        # The demuxer ends with an empty flush packet; test the size, not ``dts is None``
        # (a valid keyframe can have no dts: PyAV's examples/basics/remux.py).
        if packet.size == 0:
            continue
        if packet.pos is not None and packet.pos >= 0:  # -1 where the demuxer cannot tell
            if counts_losses and packet.pos - covered > SLACK:
                counter.lost += packet.pos - covered
            covered = max(covered, packet.pos + packet.size)
            counter.reached(opened.start_byte + covered)
        if packet.stream_index in chosen:
            yield packet
    if counts_losses and opened.size - covered > SLACK:
        counter.lost += opened.size - covered


def _decoded(
    packets: Iterator[Packet], streams: _Streams, copy_video: bool, reading: Reading
) -> Iterator[Item]:
    """Decoded frames, in decoding order; video packets as they are when copying."""
    video, audio = streams.video, streams.audio
    for packet in packets:
        if video is not None and packet.stream_index == video.index:
            if copy_video:
                yield packet
            else:
                yield from _frames(video, packet, reading)
        elif audio is not None and packet.stream_index == audio.index:
            yield from _frames(audio, packet, reading)
    for stream in streams.selected():
        if stream is video and copy_video:
            continue
        # Frame threading holds frames back: always flush the decoders.
        yield from _frames(stream, None, reading)


def _within_limits(items: Iterator[Item], options: MediaOptions) -> Iterator[Item]:
    """The items unchanged, every decoded picture checked against the resolution limit:
    the header's size binds nothing, any keyframe can change it (a 320x240 header, then
    16000x16000 frames)."""
    for item in items:
        if isinstance(item, av.VideoFrame):
            options.check_size(item.width, item.height)
        yield item


def _frames(
    stream: av.VideoStream | av.AudioStream, packet: Packet | None, reading: Reading
) -> Iterator[av.VideoFrame | av.AudioFrame]:
    """A packet's frames that have a time; a packet that cannot be decoded is counted
    and skipped."""
    try:
        frames = stream.codec_context.decode(packet)
    except av.error.FFmpegError:
        reading.decode_errors += 1
        return
    for frame in frames:
        if frame.pts is None:
            continue
        if frame.time_base is None:  # frames flushed out of a decoder come without one
            frame.time_base = stream.time_base
        yield frame
