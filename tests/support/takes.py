"""Make takes the way browsers upload them, with PyAV: for tests, benchmarks and the demo.

A take is a folder of chunks (``video_{n}.webm``, ``audio_{n}.webm`` or ``av_{n}.webm``).
``make_take`` records a synthetic source (a moving picture, a tone, silence or given
speech samples) and cuts it like MediaRecorder does:

- ``split``: one recording cut into pieces at arbitrary byte offsets (only chunk 0 has a
  header), as ``MediaRecorder.start(timeslice)`` uploads it;
- ``restarted``: a recorder restarted for every chunk, each chunk a whole file whose
  timestamps start again at 0;
- ``av``: like ``split``, with audio and video in one recording.

``make_resized_take`` records a take whose picture changes size mid-take (a camera
switch, a window resize), split or restarted.

``add_header_only_chunk`` adds the debris a restarted recorder leaves when ``stop()``
lands just after a restart: a last chunk with the header and tracks, and no frame.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

VideoCodec = Literal["vp8", "vp9", "h264"]
AudioSource = Literal["tone", "silence"]
TakeLayout = Literal["split", "restarted", "av"]

_ENCODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9", "h264": "libx264"}
AUDIO_RATE = 48_000


@dataclass(frozen=True)
class TakeSpec:
    """What ``make_take`` recorded: the truth a test compares the output with."""

    folder: Path
    duration: float
    video_frames: int
    video_codec: VideoCodec | None
    audio: bool
    size: tuple[int, int]
    chunk_names: list[str] = field(default_factory=list)


def _video_times(duration: float, fps: float, vfr: bool, seed: int) -> list[float]:
    """Frame times in seconds: every 1/fps, or with frames dropped at random for VFR."""
    rng = random.Random(seed)
    times = [i / fps for i in range(round(duration * fps))]
    if vfr:
        times = [t for i, t in enumerate(times) if i == 0 or rng.random() > 0.35]
    return times


def _picture(index: int, width: int, height: int) -> np.ndarray:
    """A cheap moving picture in yuv420p: a diagonal gradient that slides each frame."""
    x = np.arange(width, dtype=np.int32)[None, :]
    y = np.arange(height, dtype=np.int32)[:, None]
    luma = ((x + y + index * 4) % 256).astype(np.uint8)
    chroma = np.full((height // 2, width), (index * 3) % 256, dtype=np.uint8)
    return np.ascontiguousarray(np.concatenate([luma, chroma]))


def _samples(source: AudioSource | np.ndarray, start: int, count: int) -> np.ndarray:
    """``count`` mono float32 samples at 48 kHz from sample ``start`` of the source."""
    if isinstance(source, np.ndarray):
        chunk = source[start : start + count]
        if len(chunk) < count:
            chunk = np.concatenate([chunk, np.zeros(count - len(chunk), np.float32)])
        return chunk.astype(np.float32)
    if source == "silence":
        return np.zeros(count, np.float32)
    n = np.arange(start, start + count)
    return (0.3 * np.sin(2 * np.pi * 440.0 * n / AUDIO_RATE)).astype(np.float32)


def _in_gap(t: float, gap: tuple[float, float] | None) -> bool:
    return gap is not None and gap[0] <= t < gap[0] + gap[1]


def record(
    path: Path,
    *,
    start: float,
    end: float,
    video_codec: VideoCodec | None,
    audio: AudioSource | np.ndarray | None,
    size: tuple[int, int] = (320, 240),
    fps: float = 30.0,
    vfr: bool = False,
    gap: tuple[float, float] | None = None,
    audio_start: float = 0.0,
    seed: int = 0,
    live: bool = False,
) -> int:
    """Record [start, end) of the synthetic source into one file; returns its frame count.

    Timestamps in the file start at 0 (as a freshly started recorder writes them). With
    ``live``, the file is a piece of a longer stream as MediaRecorder writes one: its
    timestamps are the take's (from ``start``), its Segment has no size and there are
    no Cues, so the clusters of pieces recorded one after another can be concatenated;
    H.264 keyframes carry their parameter sets in band.
    """
    fmt = "matroska" if video_codec == "h264" else "webm"
    frames = 0
    origin = 0.0 if live else start
    with av.open(str(path), "w", format=fmt, options={"live": "1"} if live else {}) as out:
        vstream: Any = None
        astream: Any = None
        if video_codec is not None:
            vstream = out.add_stream(_ENCODERS[video_codec], rate=int(fps))
            vstream.width, vstream.height = size
            vstream.pix_fmt = "yuv420p"
            vstream.codec_context.time_base = Fraction(1, 1000)
            if video_codec == "h264":
                vstream.options = {"preset": "ultrafast", "bf": "0"}
                if live:
                    vstream.options = {**vstream.options, "x264-params": "repeat-headers=1"}
            else:
                vstream.options = {"deadline": "realtime", "cpu-used": "8", "b": "400k"}
        if audio is not None:
            astream = out.add_stream("libopus", rate=AUDIO_RATE)
            astream.layout = "mono"
        items: list[tuple[float, str]] = []
        if vstream is not None:
            all_times = _video_times(end, fps, vfr, seed)
            items += [(t, "v") for t in all_times if start <= t < end and not _in_gap(t, gap)]
        if astream is not None:
            step = 960 / AUDIO_RATE
            n = 0
            while start + n * step < end - 1e-9:
                t = start + n * step
                if not _in_gap(t, gap) and t >= audio_start:
                    items.append((t, "a"))
                n += 1
        items.sort()
        audio_pts: list[int] = []  # the encoder re-times audio; keep the recorder's times
        for t, kind in items:
            rel = t - origin
            if kind == "v" and vstream is not None:
                index = round(t * fps)
                vf = av.VideoFrame.from_ndarray(_picture(index, *size), format="yuv420p")
                vf.pts = round(rel * 1000)
                vf.time_base = Fraction(1, 1000)
                for packet in vstream.encode(vf):
                    out.mux(packet)
                frames += 1
            elif kind == "a" and astream is not None and audio is not None:
                first = round(t * AUDIO_RATE)
                data = _samples(audio, first, 960).reshape(1, -1)
                af = av.AudioFrame.from_ndarray(data, format="flt", layout="mono")
                af.sample_rate = AUDIO_RATE
                af.pts = round(rel * AUDIO_RATE)
                af.time_base = Fraction(1, AUDIO_RATE)
                audio_pts.append(af.pts)
                for packet in astream.encode(af):
                    _stamp(packet, audio_pts)
                    out.mux(packet)
        for stream in (vstream, astream):
            if stream is not None:
                for packet in stream.encode(None):
                    if stream is astream:
                        _stamp(packet, audio_pts)
                    out.mux(packet)
    return frames


def _stamp(packet: Any, times: list[int]) -> None:
    """Give an Opus packet the time of the frame it encodes (one frame, one packet)."""
    if times:
        packet.pts = packet.dts = times.pop(0)
        packet.time_base = Fraction(1, AUDIO_RATE)


def split_bytes(data: bytes, pieces: int, seed: int = 0) -> Iterator[bytes]:
    """Cut ``data`` into ``pieces`` parts at arbitrary (not cluster-aligned) offsets."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), pieces - 1)) if pieces > 1 else []
    edges = [0, *cuts, len(data)]
    for a, b in itertools.pairwise(edges):
        yield data[a:b]


# Matroska element IDs: the Segment, and the top-level elements a header-only chunk keeps.
SEGMENT, INFO, TRACKS, CLUSTER = (
    b"\x18\x53\x80\x67",
    b"\x15\x49\xa9\x66",
    b"\x16\x54\xae\x6b",
    b"\x1f\x43\xb6\x75",
)
UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def _vint(data: bytes, at: int) -> tuple[int, int]:
    """An EBML variable-length integer at ``at``: its value (marker bit cleared), length.
    A zero byte starts none (it would loop for ever): ValueError."""
    if not data[at]:
        raise ValueError(f"no EBML integer at byte {at}")
    length = 1
    while not data[at] & (0x80 >> (length - 1)):
        length += 1
    value = data[at] & (0xFF >> length)
    for byte in data[at + 1 : at + length]:
        value = value << 8 | byte
    return value, length


def header_only(data: bytes) -> bytes:
    """A whole Matroska file cut down to what Chromium uploads when a restarted recorder
    is stopped at once: the EBML header, a Segment of unknown size, Info and Tracks."""
    size, length = _vint(data, 4)
    at = 4 + length + size  # past the EBML header
    head = data[:at] + SEGMENT + UNKNOWN_SIZE
    at += len(SEGMENT) + _vint(data, at + len(SEGMENT))[1]
    kept = b""
    while at < len(data) and data[at : at + 4] != CLUSTER:
        id_length = _vint(data, at)[1]
        size, length = _vint(data, at + id_length)
        end = at + id_length + length + size
        if data[at : at + 4] in (INFO, TRACKS):
            kept += data[at:end]
        at = end
    return head + kept


def resized_split_take(folder: Path, first: tuple[int, int], then: tuple[int, int]) -> None:
    """A split video take whose header says ``first`` while its second chunk holds the
    clusters of a recording made at ``then``: a size change the header does not tell."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for n, size in enumerate((first, then)):
        path = folder / f".part{n}"
        record(path, start=0.0, end=0.5, video_codec="vp8", audio=None, size=size)
        parts.append(path.read_bytes())
        path.unlink()
    (folder / "video_0.webm").write_bytes(parts[0])
    (folder / "video_1.webm").write_bytes(parts[1][parts[1].find(CLUSTER) :])


def make_resized_take(
    folder: Path,
    sizes: Sequence[tuple[int, int]] = ((320, 240), (240, 320), (320, 180)),
    *,
    seconds: float = 0.6,
    layout: Literal["split", "restarted"] = "split",
    video_codec: VideoCodec = "vp8",
    audio: AudioSource | None = "tone",
    chunks: int = 4,
) -> TakeSpec:
    """A take whose picture changes size, as a camera switch (to a portrait camera) or a
    window resize does: ``seconds`` at each of ``sizes`` in turn, a keyframe at each
    change; audio from a recorder of its own throughout.

    ``split``: one recorder's stream, whose header tells the first size only, cut into
    ``chunks`` at arbitrary offsets. ``restarted``: a recorder restarted at each change,
    a whole file per size (and an audio file for each)."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = "mkv" if video_codec == "h264" else "webm"
    names: list[str] = []
    frames = 0
    if layout == "restarted":
        for i, size in enumerate(sizes):
            start, end = i * seconds, (i + 1) * seconds
            frames += record(
                folder / f"video_{i}.{ext}",
                start=start,
                end=end,
                video_codec=video_codec,
                audio=None,
                size=size,
            )
            names.append(f"video_{i}.{ext}")
            if audio is not None:
                record(
                    folder / f"audio_{i}.webm", start=start, end=end, video_codec=None, audio=audio
                )
                names.append(f"audio_{i}.webm")
    else:
        stream = b""
        part = folder / ".part"
        for i, size in enumerate(sizes):
            frames += record(
                part,
                start=i * seconds,
                end=(i + 1) * seconds,
                video_codec=video_codec,
                audio=None,
                size=size,
                live=True,
            )
            data = part.read_bytes()
            stream += data if i == 0 else data[data.find(CLUSTER) :]  # the header once
        part.unlink()
        for i, piece in enumerate(split_bytes(stream, chunks)):
            (folder / f"video_{i}.{ext}").write_bytes(piece)
            names.append(f"video_{i}.{ext}")
        if audio is not None:
            record(part, start=0.0, end=seconds * len(sizes), video_codec=None, audio=audio)
            for i, piece in enumerate(split_bytes(part.read_bytes(), chunks)):
                (folder / f"audio_{i}.webm").write_bytes(piece)
                names.append(f"audio_{i}.webm")
            part.unlink()
    return TakeSpec(
        folder=folder,
        duration=seconds * len(sizes),
        video_frames=frames,
        video_codec=video_codec,
        audio=audio is not None,
        size=sizes[0],
        chunk_names=names,
    )


def recut_evenly(folder: Path, kind: str, pieces: int) -> list[Path]:
    """A split track's chunks cut again into ``pieces`` of equal size, so that a test
    knows what share of the track each chunk holds."""
    old = sorted(folder.glob(f"{kind}_*"), key=lambda p: int(p.stem.split("_")[1]))
    data = b"".join(p.read_bytes() for p in old)
    for path in old:
        path.unlink()
    step = -(-len(data) // pieces)
    paths = [folder / f"{kind}_{i}{old[0].suffix}" for i in range(pieces)]
    for i, path in enumerate(paths):
        path.write_bytes(data[i * step : (i + 1) * step])
    return paths


def add_header_only_chunk(spec: TakeSpec, kind: str, padding: int = 0) -> Path:
    """A header-only chunk after the take's last ``kind`` chunk, zero-padded if asked."""
    names = [n for n in spec.chunk_names if n.startswith(kind + "_")]
    last = max(names, key=lambda n: int(n.split("_")[1].split(".")[0]))
    index = int(last.split("_")[1].split(".")[0]) + 1
    path = spec.folder / f"{kind}_{index}{Path(last).suffix}"
    path.write_bytes(header_only((spec.folder / last).read_bytes()) + bytes(padding))
    return path


def make_take(
    folder: Path,
    *,
    duration: float = 3.0,
    video_codec: VideoCodec | None = "vp8",
    audio: AudioSource | np.ndarray | None = "tone",
    layout: TakeLayout = "split",
    chunks: int = 3,
    size: tuple[int, int] = (320, 240),
    fps: float = 30.0,
    vfr: bool = False,
    gap: tuple[float, float] | None = None,
    first_index: int = 0,
    audio_start: float = 0.0,
    seed: int = 0,
) -> TakeSpec:
    """Record a take and upload it into ``folder`` as a browser client would name it."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = "mkv" if video_codec == "h264" else "webm"
    names: list[str] = []
    frames = 0

    source = functools.partial(
        record, size=size, fps=fps, vfr=vfr, gap=gap, audio_start=audio_start, seed=seed
    )
    tracks: list[tuple[str, VideoCodec | None, AudioSource | np.ndarray | None]] = []
    if layout == "av":
        tracks.append(("av", video_codec, audio))
    else:
        if video_codec is not None:
            tracks.append(("video", video_codec, None))
        if audio is not None:
            tracks.append(("audio", None, audio))
    for kind, vc, au in tracks:
        suffix = ext if vc else "webm"
        if layout == "restarted":
            edges = [duration * i / chunks for i in range(chunks + 1)]
            for i, (a, b) in enumerate(itertools.pairwise(edges)):
                path = folder / f"{kind}_{first_index + i}.{suffix}"
                frames += source(path, start=a, end=b, video_codec=vc, audio=au)
                names.append(path.name)
            continue
        whole = folder / f".whole_{kind}"
        frames += source(whole, start=0.0, end=duration, video_codec=vc, audio=au)
        for i, piece in enumerate(split_bytes(whole.read_bytes(), chunks, seed)):
            (folder / f"{kind}_{first_index + i}.{suffix}").write_bytes(piece)
            names.append(f"{kind}_{first_index + i}.{suffix}")
        whole.unlink()
    return TakeSpec(
        folder=folder,
        duration=duration,
        video_frames=frames,
        video_codec=video_codec,
        audio=audio is not None,
        size=size,
        chunk_names=names,
    )
