"""Reading outputs back with PyAV, for assertions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np


@dataclass
class StreamInfo:
    type: str
    codec: str
    packets: int = 0
    first: float | None = None
    end: float = 0.0
    language: str | None = None
    pix_fmt: str | None = None
    pts: list[float] = field(default_factory=list)


def streams(path: Path) -> dict[str, StreamInfo]:
    """Per stream type: codec, packet count, first time and end time (pts + duration)."""
    found: dict[str, StreamInfo] = {}
    with av.open(str(path)) as c:
        for s in c.streams:
            cc: Any = s.codec_context
            found[s.type] = StreamInfo(
                s.type,
                cc.name,
                language=s.metadata.get("language"),
                pix_fmt=getattr(cc, "pix_fmt", None),
            )
        for p in c.demux():
            if p.size == 0 or p.pts is None:
                continue
            info = found[p.stream.type]
            t = float(p.pts * p.time_base)
            info.packets += 1
            info.pts.append(t)
            info.first = t if info.first is None else min(info.first, t)
            info.end = max(info.end, t + float((p.duration or 0) * p.time_base))
    return found


def duration(path: Path) -> float:
    with av.open(str(path)) as c:
        assert c.duration is not None
        return c.duration / 1_000_000


def moov_before_mdat(path: Path) -> bool:
    """Whether the MP4's index comes first (faststart)."""
    head = path.read_bytes()
    return 0 <= head.find(b"moov") < head.find(b"mdat")


def audio_samples(path: Path) -> tuple[np.ndarray, int]:
    """Mono float samples of a file's audio, and the rate."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate = stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = [g.to_ndarray()[0] for f in c.decode(stream) for g in resampler.resample(f)]
    return np.concatenate(chunks), rate


def subtitles(path: Path) -> list[tuple[float, float, str]]:
    """The mov_text cues of an MP4: (start, end, text)."""
    cues = []
    with av.open(str(path)) as c:
        stream = c.streams.subtitles[0]
        for p in c.demux(stream):
            if p.size == 0 or p.pts is None or p.time_base is None:
                continue
            start = float(p.pts * p.time_base)
            end = start + float((p.duration or 0) * p.time_base)
            subtitle_set = stream.decode2(p)
            for rect in subtitle_set or []:
                text = getattr(rect, "dialogue", b"") or getattr(rect, "text", b"")
                text = text.decode() if isinstance(text, bytes) else str(text)
                cues.append((start, end, text))
    return cues
