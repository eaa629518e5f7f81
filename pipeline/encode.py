"""The first pass: a take's tracks joined, re-timed and encoded, streaming.

Every track is demuxed (a byte-chained split stream, or restarted files shifted to
continue one another, see ``demux``), decoded and merged by time, then encoded to H.264
(or an H.264 source copied, when it keeps one picture size: see ``copyable``) and AAC
into an intermediate MPEG-TS file: it keeps no index, so memory stays flat however long
the take. The same audio decode writes the WAV output and 16 kHz mono float32 samples
for Whisper (see ``sinks``). The second pass (``mux``) makes the MP4 from it once the
captions are known.

Media lost to damage (see ``losses``): the take says so, one warning per track naming
the seconds lost, seen in two ways.

- Bytes: the demuxer skips damaged bytes or stops before a track's end (a chunk of
  random bytes, a first chunk cut short). A track that lost more than half of its bytes
  (``MAX_LOST_SHARE``) fails the take with ``CorruptMedia``: what is left is not the
  recording. Less than that is lost seconds estimated as the lost share of the track's
  bytes times the take's length.
- Time: a stream (the video, the audio) with no media for more than ``MAX_GAP`` (1 s)
  between two of its frames, or that ends more than ``MAX_SHORT_END`` (2 s) before the
  take's other stream ends, lost those seconds, however few bytes were skipped: a chunk
  replaced by a few kilobytes of garbage. A late start is not counted (separate
  recorders start apart), and time alone never fails a take: the rest is still the
  recording.

The warning gives the larger of the two estimates, with what was seen: "about 2.1 s of
the audio track could not be read (no audio from 5.9 s to 8.0 s)".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av

from pipeline.chained import container_format
from pipeline.chunks import ChunkPlan, TrackSource
from pipeline.copyable import copy_blocker
from pipeline.demux import Reading, TrackBytes, track_units
from pipeline.errors import BadChunks, CorruptMedia, NoMedia
from pipeline.losses import Coverage, track_losses
from pipeline.options import MediaOptions
from pipeline.probe import Probe, probe
from pipeline.sinks import AUDIO_RATE, AudioSink, VideoSink
from pipeline.timeline import Timed, merged

Progress = Callable[[float], None]

COPY_CODECS = frozenset({"h264"})


@dataclass(frozen=True)
class EncodedVideo:
    """The video the first pass wrote: its source, whether it was copied, and its frames."""

    source_codec: str
    copied: bool
    width: int
    height: int
    frames: int
    dropped_frames: int


@dataclass
class EncodedTake:
    """The first pass's result: the encoded streams, and the audio by-products."""

    path: Path
    duration: float
    video: EncodedVideo | None  # None for a take without video (the camera off)
    audio: bool
    audio_path: Path | None = None
    speech_path: Path | None = None
    warnings: list[str] = field(default_factory=list)


def _copy_template(track: TrackSource) -> av.container.InputContainer:
    """The track's first chunk, kept open: its video stream is the template to copy."""
    path = track.first.path
    return av.open(str(path), format=container_format(path))


def _probe_tracks(
    plan: ChunkPlan[TrackSource], options: MediaOptions
) -> tuple[Probe | None, str | None]:
    """The video's codec and size (None for a take without video: no video chunks, or
    ``av`` chunks recorded with the camera off) and the audio's channel layout (None
    without audio), from each track's first chunk."""
    video: Probe | None = None
    channel_layout = None
    if plan.video is not None:
        video = probe(plan.video.first.path)
        if plan.video.kind == "av":
            channel_layout = video.channel_layout
        if not video.codec and plan.video.kind != "av":
            raise BadChunks(f"{plan.video.first.path.name} holds no video stream")
        video = video if video.codec else None
    if plan.audio is not None:
        channel_layout = probe(plan.audio.first.path).channel_layout or "mono"
    if video is None and channel_layout is None:
        raise NoMedia("the take's chunks hold neither a video nor an audio stream")
    if video is not None:
        options.check_size(video.width, video.height)
    return video, channel_layout


def encode_take(
    plan: ChunkPlan[TrackSource],
    work: Path,
    options: MediaOptions | None = None,
    progress: Progress | None = None,
    copy_checked: bool = True,
    on_speech: Callable[[int], None] | None = None,
) -> EncodedTake:
    """First pass: the take's tracks joined, re-timed and encoded into ``work/encoded.ts``.
    An H.264 source is copied once ``copy_blocker`` has read it whole and found nothing
    against it; a take still being recorded cannot be read whole first: it is copied
    unchecked (``copy_checked=False``) and checked at its end (``pipeline.live``).
    ``on_speech`` is told how many samples of ``speech.f32`` are written as they are
    (``pipeline.hearing``)."""
    options = options or MediaOptions()
    work.mkdir(parents=True, exist_ok=True)
    first, channel_layout = _probe_tracks(plan, options)
    copy = (
        first is not None
        and first.codec in COPY_CODECS
        and plan.video is not None
        and (
            not copy_checked
            or copy_blocker(plan.video, (first.width, first.height), options) is None
        )
    )
    reading = Reading()
    counted = [TrackBytes(track.kind, track.size) for track in plan.tracks]
    tracks: list[Iterator[Timed]] = []
    for track, bytes_ in zip(plan.tracks, counted, strict=True):
        if track.kind == "audio":
            kinds = {"audio"}
        else:  # video, or av: one recorder for both
            kinds = {"video"} if first is not None else set()
            if track.kind == "av" and channel_layout:
                kinds.add("audio")
        tracks.append(track_units(track, kinds, copy, options, reading, bytes_))
    path = work / "encoded.ts"
    template = _copy_template(plan.video) if copy and plan.video is not None else None
    video: VideoSink | None = None
    audio: AudioSink | None = None
    seen = {kind: Coverage(kind) for kind in ("video", "audio")}
    try:
        # MPEG-TS between the passes: every packet carries its own times and nothing is
        # indexed, where an MP4 holds an entry per packet in memory, writing and reading.
        with av.open(str(path), "w", format="mpegts") as out:
            if first is not None:
                copy_from = template.streams.video[0] if template is not None else None
                video = VideoSink(out, (first.width, first.height), copy_from, options)
            if channel_layout:
                audio = AudioSink(out, work, channel_layout, options, reading.warnings, on_speech)
            end = 0.0
            for unit in merged(tracks, options.max_duration):
                if isinstance(unit.item, av.AudioFrame):
                    rate = unit.item.sample_rate or AUDIO_RATE
                    seen["audio"].add(unit.seconds, unit.seconds + unit.item.samples / rate)
                    if audio is not None:
                        audio.write(unit.item, unit.seconds)
                else:
                    seen["video"].add(unit.seconds, unit.seconds)
                    if video is not None:
                        video.write(unit.item, unit.seconds)
                end = max(end, unit.seconds)
                if progress is not None:
                    progress(min(1.0, sum(c.read for c in counted) / max(1, plan.total_bytes)))
            if video is not None:
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
    if video is not None and video.frames == 0:
        raise CorruptMedia("no video frame could be decoded from the take")
    if video is None and (audio is None or audio.samples == 0):
        raise CorruptMedia("no audio could be decoded from the take")
    if reading.decode_errors:
        reading.warnings.append(f"{reading.decode_errors} packets could not be decoded")
    if video is not None and video.damaged:
        plural = "s" if video.damaged > 1 else ""
        reading.warnings.append(f"{video.damaged} damaged video packet{plural} could not be copied")
    duration = max(end, audio.samples / AUDIO_RATE if audio is not None else 0.0)
    take_end = max((c.until for c in seen.values() if c.until is not None), default=0.0)
    for track, bytes_ in zip(plan.tracks, counted, strict=True):
        streams = [seen[kind] for kind in ("video", "audio") if track.kind in (kind, "av")]
        lost = track_losses(bytes_, streams, take_end, duration)
        if lost is not None:
            reading.warnings.append(lost)
    return EncodedTake(
        path=path,
        duration=duration,
        video=EncodedVideo(
            first.codec, copy, video.width, video.height, video.frames, video.dropped
        )
        if video is not None and first is not None
        else None,
        audio=audio is not None and audio.samples > 0,
        audio_path=audio.wav_path if audio is not None else None,
        speech_path=audio.speech.path if audio is not None and audio.speech else None,
        # Read last: a take followed while it was recorded knows its plan's warnings
        # (chunks skipped) only once its last chunk has come.
        warnings=[*plan.warnings, *reading.warnings],
    )
