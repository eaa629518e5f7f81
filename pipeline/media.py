"""Join a take's chunks, re-time them and encode them with PyAV, streaming.

Two passes, both streaming (a take is never held in memory):

1. ``encode_take``: demux every track (a byte-chained split stream, or restarted files
   shifted to continue one another), decode, merge video and audio by time, encode
   H.264 (or copy an H.264 source) and AAC into an intermediate MPEG-TS file (it keeps no
   index, so memory stays flat however long the take); from the same audio
   decode, write the WAV output and 16 kHz mono float32 samples for Whisper.
2. ``mux_final``: remux that into the MP4 with the caption cues as a ``mov_text`` track, with
   ``faststart``. It is a stream copy, hundreds of times faster than real time, so
   transcription can run between the passes without holding up the encode.

Timestamps: real ones are kept (variable frame rate, no duplicated frames); video frames
whose time does not increase are dropped; audio is resampled with ``async`` so gaps
become silence and overlaps are trimmed; all tracks share one start (the earliest first
timestamp), the audio padded with silence up to it.
"""

from __future__ import annotations

import functools
import heapq
import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import av.error

from pipeline.captions import Cue, ass_dialogue
from pipeline.chunks import ChunkPlan, Layout, Track
from pipeline.errors import CorruptMedia, LimitExceeded, NoVideo
from pipeline.speech import SpeechWriter

AudioOutput = Literal["wav", "m4a", "none"]
Progress = Callable[[float], None]

MS = Fraction(1, 1000)
AUDIO_RATE = 48_000
COPY_CODECS = frozenset({"h264"})
# The intermediate (MPEG-TS) cannot hold negative times, and encoders start below zero
# (B-frame reordering, AAC priming). Everything is written this much later and moved
# back when the MP4 is made, so the muxer never shifts anything on its own.
LEAD = 1  # seconds

# The header the mov_text encoder needs; without a Default style it writes <font> tags.
ASS_HEADER = (
    "[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n"
    "ScaledBorderAndShadow: yes\n\n[V4+ Styles]\n"
    "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
    "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
    "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    "Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0"
    "\n\n[Events]\n"
    "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
)


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


@dataclass
class EncodedTake:
    """The first pass's result: the encoded streams, and the audio by-products."""

    path: Path
    duration: float
    source_codec: str
    video_copied: bool
    width: int
    height: int
    frames: int
    dropped_frames: int
    audio: bool
    audio_path: Path | None = None
    speech_path: Path | None = None
    warnings: list[str] = field(default_factory=list)


class ChainReader(io.RawIOBase):
    """Reads files one after another as one stream, counting the bytes it has read."""

    def __init__(self, paths: Iterable[Path]) -> None:
        super().__init__()
        self._paths = list(paths)
        self._file: io.BufferedReader | None = None
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self._file is None:
                if not self._paths:
                    return 0
                self._file = self._paths.pop(0).open("rb")
            n: int = self._file.readinto(buffer)
            if n:
                self.bytes_read += n
                return n
            self._file.close()
            self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


@dataclass
class _Reading:
    """What the readers noticed, and how far they got."""

    warnings: list[str] = field(default_factory=list)
    decode_errors: int = 0
    bytes_done: int = 0


# A unit is (seconds, order, kind, frame-or-packet); order breaks ties deterministically.
Unit = tuple[float, int, str, Any]


def _format_for(path: Path) -> str | None:
    return "mp4" if path.suffix == ".mp4" else "matroska"


def _open(track: Track) -> Iterator[tuple[Any, Callable[[], int]]]:
    """Open the track's containers in order with a byte counter for each."""
    if track.layout is Layout.SPLIT:
        reader = ChainReader(track.paths)
        try:
            container = av.open(reader, format=_format_for(track.paths[0]))
        except av.error.FFmpegError as e:
            raise CorruptMedia(f"{track.kind} chunks cannot be read: {e}") from e
        yield container, lambda: reader.bytes_read
        return
    done = 0
    for chunk in track.chunks:
        try:
            container = av.open(str(chunk.path))
        except av.error.FFmpegError as e:
            raise CorruptMedia(f"{chunk.path.name} cannot be read: {e}") from e
        yield container, functools.partial(int, done)
        done += chunk.size


def _units(
    track: Track,
    kinds: set[str],
    copy_video: bool,
    options: MediaOptions,
    reading: _Reading,
) -> Iterator[Unit]:
    """Decoded frames (or H.264 packets to copy) of a track, with take-wide times."""
    order = itertools.count()
    next_start: float | None = None
    base_done = reading.bytes_done
    for container, counted in _open(track):
        with container:
            streams = []
            if "video" in kinds and container.streams.video:
                streams.append(container.streams.video[0])
            if "audio" in kinds and container.streams.audio:
                streams.append(container.streams.audio[0])
            if "video" in kinds and not container.streams.video:
                raise NoVideo(f"{track.kind} chunks hold no video stream")
            for stream in streams:
                if stream.type == "video":
                    _check_resolution(stream.codec_context, options)
                    stream.codec_context.thread_type = "AUTO"
            offset = 0.0
            ends = _FileEnd()
            first = True
            packets = container.demux(streams)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except (av.error.FFmpegError, EOFError, OSError) as e:
                    reading.warnings.append(f"{track.kind} stream ends early ({e})")
                    break
                reading.bytes_done = base_done + counted()
                if packet.size == 0:
                    continue
                stream = packet.stream
                if first and packet.pts is not None:
                    # A restarted recording continues where the previous one ended.
                    start = float(packet.pts * stream.time_base)
                    offset = 0.0 if next_start is None else next_start - start
                    first = False
                for unit in _unit(packet, stream, copy_video, offset, order, reading):
                    ends.add(unit)
                    yield unit
            for stream in streams:
                if stream.type == "video" and copy_video:
                    continue
                for frame in _decode(stream, None, reading):
                    unit = (frame.time + offset, next(order), stream.type, frame)
                    ends.add(unit)
                    yield unit
            next_start = ends.end()
    reading.bytes_done = base_done + track.size


def _unit(
    packet: Any,
    stream: Any,
    copy_video: bool,
    offset: float,
    order: Iterator[int],
    reading: _Reading,
) -> Iterator[Unit]:
    if stream.type == "video" and copy_video:
        tb = stream.time_base
        stamp = packet.dts if packet.dts is not None else packet.pts
        if stamp is None:
            return
        dts = float(stamp * tb) + offset
        pts = float(packet.pts * tb) + offset if packet.pts is not None else dts
        packet.dts = round(dts * 1000)
        packet.pts = round(pts * 1000)
        packet.time_base = MS
        yield dts, next(order), "video", packet
        return
    for frame in _decode(stream, packet, reading):
        yield frame.time + offset, next(order), stream.type, frame


def _decode(stream: Any, packet: Any, reading: _Reading) -> list[Any]:
    """Decoded frames with a time; a packet that cannot be decoded is counted and skipped."""
    try:
        frames = stream.codec_context.decode(packet)
    except av.error.FFmpegError:
        reading.decode_errors += 1
        return []
    timed = []
    for frame in frames:
        if frame.pts is None:
            continue
        if frame.time_base is None:  # frames flushed out of a decoder come without one
            frame.time_base = stream.time_base
        timed.append(frame)
    return timed


class _FileEnd:
    """Where a file's media ends: its last audio sample, or its last frame plus one
    frame interval (video frames carry no reliable duration)."""

    def __init__(self) -> None:
        self.audio_end = 0.0
        self.video: list[float] = []

    def add(self, unit: Unit) -> None:
        if unit[2] == "audio":
            item = unit[3]
            length = float(item.samples) / float(item.sample_rate or AUDIO_RATE)
            self.audio_end = max(self.audio_end, unit[0] + length)
        elif not self.video:
            self.video = [unit[0], unit[0], 1.0]
        else:
            self.video[1] = max(self.video[1], unit[0])
            self.video[2] += 1

    def end(self) -> float:
        video_end = 0.0
        if self.video:
            first, last, count = self.video
            step = (last - first) / (count - 1) if count > 1 else 1 / 30
            video_end = last + step
        return max(self.audio_end, video_end)


def _check_resolution(codec_context: Any, options: MediaOptions) -> None:
    width, height = codec_context.width, codec_context.height
    if (options.max_width and width > options.max_width) or (
        options.max_height and height > options.max_height
    ):
        raise LimitExceeded(
            f"video is {width}x{height}, over the limit of {options.max_width}x{options.max_height}"
        )


@dataclass(frozen=True)
class Probe:
    codec: str
    width: int
    height: int
    audio_layout: str | None


def probe(path: Path) -> Probe:
    """The codec and size of the video, and the audio layout, from a track's first chunk."""
    try:
        with av.open(str(path), format=_format_for(path)) as container:
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            layout = audio.codec_context.layout.name if audio is not None else None
            if video is None:
                return Probe("", 0, 0, layout)
            cc = video.codec_context
            return Probe(cc.name, cc.width, cc.height, layout)
    except av.error.FFmpegError as e:
        raise CorruptMedia(f"{path.name} cannot be read: {e}") from e


# What a take can need: encoders for the outputs, decoders for what browsers record.
CODECS: tuple[tuple[str, Literal["r", "w"]], ...] = (
    ("libx264", "w"),
    ("aac", "w"),
    ("mov_text", "w"),
    ("vp8", "r"),
    ("vp9", "r"),
    ("opus", "r"),
    ("h264", "r"),
)


def codec_support() -> list[tuple[str, str, str | None]]:
    """Each codec in ``CODECS``: its name, ``encode`` or ``decode``, and why it can't be
    used (None when it can)."""
    found: list[tuple[str, str, str | None]] = []
    for name, mode in CODECS:
        action = "encode" if mode == "w" else "decode"
        try:
            av.codec.Codec(name, mode)
        except Exception as e:
            found.append((name, action, str(e)))
        else:
            found.append((name, action, None))
    return found


@dataclass(frozen=True)
class StreamInfo:
    kind: str  # video, audio, subtitle
    codec: str
    detail: str  # 1280x720, 48000 Hz, or empty
    language: str


def describe(path: Path) -> tuple[float, list[StreamInfo]]:
    """A finished file's length in seconds and what its streams hold."""
    with av.open(str(path)) as container:
        streams = []
        for stream in container.streams:
            cc: Any = stream.codec_context
            detail = ""
            if stream.type == "video":
                detail = f"{cc.width}x{cc.height}"
            elif stream.type == "audio":
                detail = f"{cc.sample_rate} Hz"
            language = stream.metadata.get("language", "")
            streams.append(StreamInfo(stream.type, cc.name, detail, language))
        return (container.duration or 0) / 1e6, streams


class _AudioSink:
    """Continuous audio from decoded frames: AAC into the MP4, WAV, and Whisper samples."""

    def __init__(
        self, out: Any, work: Path, layout: str, options: MediaOptions, warnings: list[str]
    ) -> None:
        self.layout = "stereo" if layout not in ("mono", "stereo") else layout
        self.resampler = av.AudioResampler(
            format="fltp",
            layout=self.layout,
            rate=AUDIO_RATE,
            # A frame size also keeps PyAV from passing matching frames through untouched,
            # which would skip the gap filling; 1024 is AAC's own frame size.
            frame_size=1024,
            options={"async": "1", "first_pts": "0"},
        )
        self.out = out
        self.stream = out.add_stream("aac", rate=AUDIO_RATE)
        self.stream.layout = self.layout
        self.stream.bit_rate = options.audio_bitrate
        self.samples = 0
        self.wav: Any = None
        self.wav_stream: Any = None
        self.wav_path: Path | None = None
        if options.audio_output == "wav":
            self.wav_path = work / "audio.wav"
            self.wav = av.open(str(self.wav_path), "w", format="wav")
            self.wav_stream = self.wav.add_stream("pcm_s16le", rate=AUDIO_RATE)
            self.wav_stream.layout = self.layout
        self.speech = SpeechWriter(work / "speech.f32") if options.speech else None
        self.speech_path = self.speech.path if self.speech is not None else None
        self.warnings = warnings

    def write(self, frame: Any, seconds: float) -> None:
        rate = frame.sample_rate or AUDIO_RATE
        frame.pts = round(seconds * rate)
        frame.time_base = Fraction(1, rate)
        try:
            resampled = self.resampler.resample(frame)
        except (av.error.FFmpegError, ValueError) as e:
            self.warnings.append(f"an audio frame could not be resampled ({e})")
            return
        self._emit(resampled)

    def _emit(self, frames: list[Any]) -> None:
        for f in frames:
            self.samples += f.samples
            f.pts += LEAD * AUDIO_RATE
            for packet in self.stream.encode(f):
                self.out.mux(packet)
            if self.wav is not None:
                for packet in self.wav_stream.encode(f):
                    self.wav.mux(packet)
            if self.speech is not None:
                self.speech.write(f)

    def close(self) -> None:
        self._emit(self.resampler.resample(None))
        for packet in self.stream.encode(None):
            self.out.mux(packet)
        if self.wav is not None:
            for packet in self.wav_stream.encode(None):
                self.wav.mux(packet)
            self.wav.close()
        if self.speech is not None:
            self.speech.close()

    def abort(self) -> None:
        if self.wav is not None:
            self.wav.close()
        if self.speech is not None:
            self.speech.abort()


class _VideoSink:
    """H.264 from decoded frames, or H.264 packets copied; times strictly increasing."""

    def __init__(self, out: Any, info: Probe, copy_from: Any, options: MediaOptions) -> None:
        self.out = out
        self.copy = copy_from is not None
        self.frames = 0
        self.dropped = 0
        self.last_ms = -1
        self.last_pts_ms = -1
        if self.copy:
            self.stream = out.add_stream_from_template(copy_from)
            self.width, self.height = info.width, info.height
            return
        # libx264 with yuv420p needs even dimensions.
        self.width, self.height = max(2, info.width & ~1), max(2, info.height & ~1)
        self.stream = out.add_stream(
            "libx264", rate=30, options={"preset": options.preset, "crf": str(options.crf)}
        )
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = MS
        self.stream.codec_context.thread_type = "AUTO"

    def write(self, item: Any, seconds: float) -> None:
        ms = 0 if self.frames == 0 and not self.copy else round(seconds * 1000)
        if ms <= self.last_ms:
            self.dropped += 1
            return
        self.last_ms = ms
        self.frames += 1
        if self.copy:
            shift = item.dts - ms
            item.dts = ms + LEAD * 1000
            item.pts = max(item.pts - shift, ms) + LEAD * 1000
            item.stream = self.stream
            self.out.mux(item)
            return
        frame = item
        if (
            frame.width != self.width
            or frame.height != self.height
            or (frame.format.name != "yuv420p")
        ):
            frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        frame.pts = ms + LEAD * 1000
        frame.time_base = MS
        for packet in self.stream.encode(frame):
            self.out.mux(packet)

    def close(self) -> None:
        if not self.copy:
            for packet in self.stream.encode(None):
                self.out.mux(packet)


def _copy_template(track: Track) -> Any:
    """The video stream of the track's first chunk, kept open as a template to copy."""
    path = track.paths[0]
    return av.open(str(path), format=_format_for(path))


def encode_take(
    plan: ChunkPlan,
    work: Path,
    options: MediaOptions = MediaOptions(),
    progress: Progress | None = None,
) -> EncodedTake:
    """First pass: the take's tracks joined, re-timed and encoded into ``work/encoded.ts``."""
    assert plan.video is not None
    work.mkdir(parents=True, exist_ok=True)
    video_info = probe(plan.video.paths[0])
    if not video_info.codec:
        raise NoVideo(f"{plan.video.paths[0].name} holds no video stream")
    _check_resolution(video_info, options)
    audio_layout = video_info.audio_layout if plan.video.kind == "av" else None
    if plan.audio is not None:
        audio_layout = probe(plan.audio.paths[0]).audio_layout or "mono"
    copy = video_info.codec in COPY_CODECS
    reading = _Reading(warnings=list(plan.warnings))
    video_kinds = {"video", "audio"} if plan.video.kind == "av" and audio_layout else {"video"}
    sources = [_units(plan.video, video_kinds, copy, options, reading)]
    if plan.audio is not None:
        sources.append(_units(plan.audio, {"audio"}, False, options, reading))
    total = max(1, plan.total_bytes)
    path = work / "encoded.ts"
    template = _copy_template(plan.video) if copy else None
    audio: _AudioSink | None = None
    try:
        # MPEG-TS between the passes: every packet carries its own times and nothing is
        # indexed, where an MP4 holds an entry per packet in memory, writing and reading.
        with av.open(str(path), "w", format="mpegts") as out:
            copy_from = template.streams.video[0] if template is not None else None
            video = _VideoSink(out, video_info, copy_from, options)
            if audio_layout:
                audio = _AudioSink(out, work, audio_layout, options, reading.warnings)
            t0: float | None = None
            end = 0.0
            for seconds, _, kind, item in heapq.merge(*sources, key=lambda u: (u[0], u[1])):
                if t0 is None:
                    t0 = seconds
                rel = seconds - t0
                if options.max_duration is not None and rel > options.max_duration:
                    raise LimitExceeded(
                        f"take is longer than the limit of {options.max_duration:g} s"
                    )
                if kind == "video":
                    video.write(item, rel)
                elif audio is not None:
                    audio.write(item, rel)
                end = max(end, rel)
                if progress is not None:
                    progress(min(1.0, reading.bytes_done / total))
            video.close()
            if audio is not None:
                audio.close()
    except BaseException:
        if audio is not None:
            audio.abort()
        raise
    finally:
        if template is not None:
            template.close()
    if video.frames == 0:
        raise CorruptMedia("no video frame could be decoded from the take")
    if reading.decode_errors:
        reading.warnings.append(f"{reading.decode_errors} packets could not be decoded")
    audio_seconds = audio.samples / AUDIO_RATE if audio is not None else 0.0
    return EncodedTake(
        path=path,
        duration=max(end, audio_seconds),
        source_codec=video_info.codec,
        video_copied=copy,
        width=video.width,
        height=video.height,
        frames=video.frames,
        dropped_frames=video.dropped,
        audio=audio is not None and audio.samples > 0,
        audio_path=audio.wav_path if audio is not None else None,
        speech_path=audio.speech_path if audio is not None else None,
        warnings=reading.warnings,
    )


def _iso639_2(language: str | None) -> str:
    """The three-letter code MP4 wants ("eng") for a Whisper language ("en")."""
    if not language:
        return "und"
    if len(language) == 3:
        return language
    import pycountry

    found = pycountry.languages.get(alpha_2=language)
    return getattr(found, "alpha_3", "und") if found is not None else "und"


def mux_final(
    encoded: Path,
    out_path: Path,
    cues: Sequence[Cue],
    language: str | None = None,
) -> None:
    """Second pass: the MP4, stream-copied from ``encoded`` with the cues as a mov_text
    track, faststart. Only this MP4's own sample index grows with the take's length."""
    tmp = out_path.with_suffix(".partial.mp4")
    with (
        av.open(str(encoded)) as src,
        av.open(str(tmp), "w", format="mp4", container_options={"movflags": "+faststart"}) as out,
    ):
        mapping = {s.index: out.add_stream_from_template(s) for s in src.streams}
        subs = None
        if cues:
            subs = out.add_stream("mov_text")
            subs.codec_context.subtitle_header = ASS_HEADER.encode()
            subs.metadata["language"] = _iso639_2(language)
        out.start_encoding()
        pending = list(cues)

        def put_cues(until: float) -> None:
            while subs is not None and pending and pending[0].start <= until:
                _mux_cue(out, subs, pending.pop(0))

        for packet in _unlead(src.demux()):
            put_cues(float(packet.dts * packet.time_base))
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
        put_cues(float("inf"))
    tmp.replace(out_path)


def _unlead(packets: Iterable[Any]) -> Iterator[Any]:
    """The intermediate's packets with their times moved back by ``LEAD``."""
    for packet in packets:
        if packet.size == 0 or packet.dts is None or packet.time_base is None:
            continue
        lead = round(LEAD / packet.time_base)
        packet.dts -= lead
        if packet.pts is not None:
            packet.pts -= lead
        yield packet


def _mux_cue(out: Any, stream: Any, cue: Cue) -> None:
    from av.subtitles.subtitle import SubtitleSet

    tb = stream.time_base
    start = round(cue.start / tb)
    end = round(cue.end / tb)
    subtitle = SubtitleSet.create(
        text=ass_dialogue(cue.text).encode(), start=0, end=end - start, pts=start
    )
    packet = stream.codec_context.encode_subtitle(subtitle)
    packet.stream = stream
    packet.pts = packet.dts = start
    packet.duration = end - start
    packet.time_base = tb
    out.mux(packet)


def remux_audio(encoded: Path, out_path: Path) -> None:
    """The encoded AAC track, copied into an M4A file."""
    with (
        av.open(str(encoded)) as src,
        av.open(
            str(out_path), "w", format="ipod", container_options={"movflags": "+faststart"}
        ) as out,
    ):
        stream = src.streams.audio[0]
        target = out.add_stream_from_template(stream)
        for packet in _unlead(src.demux(stream)):
            packet.stream = target
            out.mux(packet)
