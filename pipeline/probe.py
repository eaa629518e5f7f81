"""What media holds, read from headers: a chunk's codecs, a finished file's streams, and
which codecs this PyAV build can use."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

import av
import av.error

from pipeline.chained import container_format
from pipeline.errors import CorruptMedia


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
        raise CorruptMedia(f"{path.name} cannot be read: {e}") from e


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
