"""Whether an H.264 track can be stream-copied: one picture size, one set of parameters.

A copied stream is never decoded, so neither the resolution limit on every decoded
picture (``demux._within_limits``) nor the fitting of another size into the first
(``letterbox``) would see a change inside it: a camera switch in a Chromium
``codecs=h264`` recording starts a new sequence parameter set (SPS) with the new size
at a keyframe, and the MP4 would say 320x240 while its pictures turn 240x320 halfway.
So before a track is copied, ``copy_blocker`` reads it once: it demuxes every packet
(hundreds of times faster than real time) and decodes only the packets that can start
a picture size, those flagged as keyframes and those that carry an SPS or an IDR slice
whatever their flag says. Every size it finds is checked against the limits; a size
other than the first, or a restarted file whose parameter sets (its header's
``avcC``) differ from the first file's, makes the take decode and encode its video,
where the size change is fitted like any other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import av
import av.error

from pipeline.chained import open_track
from pipeline.chunks import TrackSource
from pipeline.options import MediaOptions

# NAL unit types that start or size a picture: an IDR slice, an SPS.
IDR, SPS = 5, 7


def copy_blocker(track: TrackSource, first: tuple[int, int], options: MediaOptions) -> str | None:
    """None when ``track`` (H.264) can be copied as it is; else why it must be encoded
    again. Raises ``LimitExceeded`` for a picture over the resolution limit. Damage is
    left to the encode pass, which reads the same bytes and reports it."""
    extradata: bytes | None = None
    for opened in open_track(track):
        with opened.container as container:
            if not container.streams.video:
                return None  # the encode pass says what is wrong with it
            stream = container.streams.video[0]
            cc = stream.codec_context
            options.check_size(cc.width, cc.height)
            header = bytes(cc.extradata or b"")
            if extradata is None:
                extradata = header
            elif header != extradata:
                return "its files have different parameter sets"
            packets = container.demux(stream)
            for size in _picture_sizes(cc, packets, _length_size(header)):
                options.check_size(*size)
                if size != first:
                    return (
                        f"its pictures change size from {first[0]}x{first[1]} "
                        f"to {size[0]}x{size[1]}"
                    )
    return None


def _picture_sizes(
    decoder: av.VideoCodecContext,
    packets: Iterator[av.Packet[av.VideoStream]],
    length_size: int | None,
) -> Iterator[tuple[int, int]]:
    """The size of every picture that a keyframe, an SPS or an IDR slice starts."""
    with contextlib.suppress(av.error.FFmpegError, EOFError, OSError):  # damage: stop there
        for packet in packets:
            if packet.size == 0:
                continue
            if not packet.is_keyframe and not _starts_picture(bytes(packet), length_size):
                continue
            with contextlib.suppress(av.error.FFmpegError):
                for frame in decoder.decode(packet):
                    yield frame.width, frame.height
            if decoder.width and decoder.height:  # an SPS activated without a frame out
                yield decoder.width, decoder.height
    with contextlib.suppress(av.error.FFmpegError):
        for frame in decoder.decode(None):
            yield frame.width, frame.height


def _length_size(extradata: bytes) -> int | None:
    """The NAL length prefix size of an ``avcC`` header (1, 2 or 4 bytes); None for a
    stream without one (Annex B: start codes)."""
    if len(extradata) >= 5 and extradata[0] == 1:
        return (extradata[4] & 3) + 1
    return None


def _starts_picture(data: bytes, length_size: int | None) -> bool:
    """Whether a packet carries an SPS or an IDR slice."""
    return any(unit in (IDR, SPS) for unit in _nal_types(data, length_size))


def _nal_types(data: bytes, length_size: int | None) -> Iterator[int]:
    if length_size is None:  # Annex B: 00 00 01 before every unit
        at = data.find(b"\x00\x00\x01")
        while 0 <= at < len(data) - 3:
            yield data[at + 3] & 0x1F
            at = data.find(b"\x00\x00\x01", at + 3)
        return
    at = 0
    while at + length_size < len(data):
        size = int.from_bytes(data[at : at + length_size], "big")
        yield data[at + length_size] & 0x1F
        at += length_size + max(1, size)
