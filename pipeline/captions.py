"""Captions from a transcript: cues wrapped for reading, and the SRT, WebVTT, JSON writers."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.transcribe import Transcript

LINE_WIDTH = 42
MAX_LINES = 2


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str  # lines joined by "\n"


def _split(text: str, start: float, end: float) -> list[Cue]:
    """One segment as cues of at most two lines each, time shared by characters."""
    lines = textwrap.wrap(" ".join(text.split()), LINE_WIDTH) or []
    groups = [lines[i : i + MAX_LINES] for i in range(0, len(lines), MAX_LINES)]
    total = sum(len(" ".join(g)) for g in groups) or 1
    cues = []
    t = start
    for group in groups:
        span = (end - start) * len(" ".join(group)) / total
        cues.append(Cue(round(t, 3), round(t + span, 3), "\n".join(group)))
        t += span
    return cues


def cues_from(transcript: Transcript, duration: float | None = None) -> list[Cue]:
    """Cues for the transcript's segments: inside the take, increasing, never empty."""
    cues: list[Cue] = []
    for segment in transcript.segments:
        start, end = max(0.0, segment.start), segment.end
        if duration is not None:
            end = min(end, duration)
        if cues:
            start = max(start, cues[-1].end)
        if end <= start or not segment.text.strip():
            continue
        cues.extend(_split(segment.text, start, end))
    return cues


def _stamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(cues: Sequence[Cue]) -> str:
    """SubRip: numbered cues, times rounded to the millisecond."""
    blocks = [
        f"{i}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n{c.text}\n"
        for i, c in enumerate(cues, 1)
    ]
    return "\n".join(blocks)


def to_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT, the format players and browsers read natively."""
    blocks = [f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n{c.text}\n" for c in cues]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_json(transcript: Transcript, **fields: Any) -> str:
    """The transcript with the original service's fields, plus words, engine, duration."""
    segments = []
    for i, s in enumerate(transcript.segments):
        item: dict[str, Any] = {
            "id": i,
            "start": round(s.start, 3),
            "end": round(s.end, 3),
            "text": s.text.strip(),
        }
        if s.words:
            item["words"] = [
                {
                    "start": round(w.start, 3),
                    "end": round(w.end, 3),
                    "word": w.word,
                    "probability": round(w.probability, 4),
                }
                for w in s.words
            ]
        segments.append(item)
    body = {
        **fields,
        "model_used": transcript.model,
        "engine": transcript.engine,
        "language": transcript.language,
        "duration": round(transcript.duration, 3),
        "full_text": " ".join(s.text.strip() for s in transcript.segments).strip(),
        "segments": segments,
    }
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"
