"""What media holds, read from headers: a chunk's codecs, whether it holds any frame, a
finished file's streams, and which codecs this PyAV build can use."""

from __future__ import annotations

import dataclasses
import mmap
from pathlib import Path
from typing import Literal, NamedTuple

import av
import av.error

from pipeline.chained import container_format
from pipeline.chunks import ChunkPlan, Join, Track
from pipeline.errors import CorruptMedia, reason


class Probe(NamedTuple):
    """A track's first chunk: its video codec and size (empty and 0 without video), and
    its audio channel layout: "mono", "stereo" (None without audio)."""

    codec: str
    width: int
    height: int
    channel_layout: str | None


def probe(path: Path) -> Probe:
    """The codec and size of the video, and the audio channels, from a track's first chunk."""
    try:
        with av.open(str(path), format=container_format(path)) as container:
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            channels = audio.codec_context.layout.name if audio is not None else None
            if video is None:
                return Probe("", 0, 0, channels)
            cc = video.codec_context
            return Probe(cc.name, cc.width, cc.height, channels)
    except av.error.FFmpegError as e:
        raise CorruptMedia(f"{path.name} cannot be read: {reason(e)}") from e


# Bytes that only a file holding media has: a Matroska Cluster, an MP4 fragment or media
# box. The header-only chunk a restarted recorder leaves has none of them.
MEDIA_MARKERS = (b"\x1f\x43\xb6\x75", b"moof", b"mdat")


def without_debris(plan: ChunkPlan[Track]) -> ChunkPlan[Track]:
    """The plan without the restarted chunks that hold no frame, each skipped with a
    warning; checked before the heavy work, one packet per chunk.

    A recorder restarted just before ``stop()`` uploads a last chunk that is only a header
    (about 110 bytes, sometimes zero-padded): it adds nothing to the take. A chunk that
    held media (a cluster or a fragment) but cannot be read fails the take, named.
    """
    warnings = list(plan.warnings)
    video, audio = (_kept(t, warnings) if t is not None else None for t in (plan.video, plan.audio))
    return ChunkPlan(video, audio, warnings)


def _kept(track: Track, warnings: list[str]) -> Track | None:
    if track.join is not Join.RESTARTED:
        return track  # a split stream's later chunks are no files of their own
    kept = []
    for chunk in track.chunks:
        if not debris(chunk.path):
            kept.append(chunk)
        else:
            warnings.append(f"{chunk.path.name} holds no frames (a header only) and was skipped")
    return dataclasses.replace(track, chunks=tuple(kept)) if kept else None


def debris(path: Path) -> bool:
    """Whether a restarted chunk is a header without frames, to be skipped; a chunk that
    held media (a cluster or a fragment) but cannot be read raises ``CorruptMedia``."""
    problem = _no_frame(path)
    if problem is None:
        return False
    if _held_media(path):
        raise CorruptMedia(f"{path.name} cannot be read: {problem}")
    return True


def _no_frame(path: Path) -> str | None:
    """None when the file has a packet to decode, else why not."""
    try:
        with av.open(str(path), format=container_format(path)) as container:
            if any(packet.size for packet in container.demux()):
                return None
            return "no frames"
    except av.error.FFmpegError as e:
        return reason(e)


def _held_media(path: Path) -> bool:
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return any(data.find(marker) >= 0 for marker in MEDIA_MARKERS)


class CodecNeed(NamedTuple):
    name: str
    mode: Literal["r", "w"]


# What a take can need: encoders for the outputs, decoders for what browsers record.
CODECS = (
    CodecNeed("libx264", "w"),
    CodecNeed("aac", "w"),
    CodecNeed("mov_text", "w"),
    CodecNeed("vp8", "r"),
    CodecNeed("vp9", "r"),
    CodecNeed("opus", "r"),
    CodecNeed("h264", "r"),
)


class CodecSupport(NamedTuple):
    name: str
    action: Literal["encode", "decode"]
    problem: str | None  # why it cannot be used; None when it can


def codec_support() -> list[CodecSupport]:
    """Whether each codec in ``CODECS`` can be used by this PyAV build."""
    found = []
    for need in CODECS:
        action: Literal["encode", "decode"] = "encode" if need.mode == "w" else "decode"
        try:
            av.codec.Codec(need.name, need.mode)
        except Exception as e:
            found.append(CodecSupport(need.name, action, str(e)))
        else:
            found.append(CodecSupport(need.name, action, None))
    return found


class StreamInfo(NamedTuple):
    kind: str  # video, audio, subtitle
    codec: str
    detail: str  # 1280x720, 48000 Hz, or empty
    language: str


class Description(NamedTuple):
    seconds: float
    streams: list[StreamInfo]


def describe(path: Path) -> Description:
    """A finished file's length in seconds and what its streams hold."""
    with av.open(str(path)) as container:
        streams = []
        for stream in container.streams:
            detail = ""
            if isinstance(stream, av.VideoStream):
                detail = f"{stream.codec_context.width}x{stream.codec_context.height}"
            elif isinstance(stream, av.AudioStream):
                detail = f"{stream.codec_context.sample_rate} Hz"
            language = stream.metadata.get("language", "")
            streams.append(StreamInfo(stream.type, stream.codec_context.name, detail, language))
        return Description((container.duration or 0) / 1e6, streams)
