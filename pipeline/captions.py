"""Captions from a transcript: cues shaped for reading, and the SRT, WebVTT, JSON writers.

A cue is what a viewer reads at once, so cues follow the usual subtitling rules: at most
two lines of at most 42 characters; on screen about 1 to 7 seconds; broken where the
speech breaks (a sentence's end, then a clause's: a comma, a colon, or a pause where
Whisper wrote none; then before a word such as "and" or "which"), never mid-phrase when
a better place fits. A cue starts when its first word is spoken (Whisper's word
timestamps), never before, and ends when its last word does, held to at least a second
when the next cue leaves room. A pause of more than ``MAX_PAUSE`` seconds always ends a
cue, so nothing stays on screen over silence."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.voice import Transcript, Word

LINE_WIDTH = 42
MIN_DURATION = 1.0
MAX_DURATION = 7.0
MAX_PAUSE = 1.5
BREATH = 0.2  # s: a pause this long between words breaks like a comma
SENTENCE_ENDS = (".", "?", "!", "…")
CLAUSE_ENDS = (",", ";", ":", "—", "-")
# A cue or line may end before these words when no punctuation is near.
CLAUSE_STARTS = frozenset(
    {
        "and",
        "but",
        "or",
        "so",
        "because",
        "which",
        "who",
        "that",
        "when",
        "where",
        "while",
        "if",
        "although",
        "though",
        "than",
        "then",
        "until",
        "unless",
    }
)


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str  # lines joined by "\n"


def _words(transcript: Transcript) -> list[Word]:
    """Every word with its time; a segment without word timestamps has its text's words
    spread over the segment by their length."""
    words: list[Word] = []
    for segment in transcript.segments:
        timed = [w for w in segment.words if w.word.strip()]
        if timed:
            words.extend(timed)
            continue
        parts = segment.text.split()
        total = sum(len(p) + 1 for p in parts)
        t = segment.start
        for part in parts:
            span = (segment.end - segment.start) * (len(part) + 1) / total
            words.append(Word(t, t + span, " " + part, 1.0))
            t += span
    return words


def _text(words: Sequence[Word]) -> str:
    return " ".join("".join(w.word for w in words).split())


def lines_of(text: str) -> list[str] | None:
    """``text`` as at most two lines of at most ``LINE_WIDTH`` characters, broken at the
    best place (after punctuation, else before a clause word, else evenly); None when it
    does not fit."""
    if len(text) <= LINE_WIDTH:
        return [text]
    parts = text.split(" ")
    best: tuple[float, list[str]] | None = None
    for k in range(1, len(parts)):
        top, bottom = " ".join(parts[:k]), " ".join(parts[k:])
        if len(top) > LINE_WIDTH or len(bottom) > LINE_WIDTH:
            continue
        # Lines of about equal length, unless a break in the sentence is near.
        cost = 4 * ((len(top) - len(bottom)) / LINE_WIDTH) ** 2
        cost += _break_cost(parts[k - 1], parts[k]) / 2
        if best is None or cost < best[0]:
            best = (cost, [top, bottom])
    return best[1] if best is not None else None


def _break_cost(before: str, after: str | None) -> float:
    """How bad a break after the word ``before`` (followed by ``after``) reads."""
    if after is None or before.endswith(SENTENCE_ENDS):
        return 0.0
    if before.endswith(CLAUSE_ENDS):
        return 1.0
    if _bare(after) in CLAUSE_STARTS and _bare(before) not in CLAUSE_STARTS:
        return 2.0
    return 4.0


def _bare(word: str) -> str:
    return word.strip(" \"'()").lower()


def _fits(words: Sequence[Word]) -> bool:
    if len(words) == 1:
        return True
    return words[-1].end - words[0].start <= MAX_DURATION and lines_of(_text(words)) is not None


def _phrases(words: list[Word]) -> list[list[Word]]:
    """The words cut at pauses longer than ``MAX_PAUSE``: no cue may span one."""
    phrases: list[list[Word]] = []
    for word in words:
        if phrases and word.start - phrases[-1][-1].end <= MAX_PAUSE:
            phrases[-1].append(word)
        else:
            phrases.append([word])
    return phrases


def _partition(words: list[Word]) -> list[list[Word]]:
    """The phrase's words as cues that fit, cut where the cuts cost least in all."""
    n = len(words)
    best = [0.0] + [math.inf] * n  # best[j]: least cost of cutting words[:j]
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            piece = words[i:j]
            if not _fits(piece):
                break
            after = words[j].word if j < n else None
            cost = 1.0 + _break_cost(words[j - 1].word.strip(), after)
            if j < n and words[j].start - words[j - 1].end >= BREATH:
                cost = min(cost, 2.0)  # a pause is a clause's end, written or not
            if piece[-1].end - piece[0].start < MIN_DURATION and j < n:
                cost += 3.0  # a flash: better joined to its neighbour
            if any(w.word.strip().endswith(SENTENCE_ENDS) for w in piece[:-1]):
                cost += 2.0  # a cue that ends a sentence and starts the next
            if best[i] + cost < best[j]:
                best[j], cut[j] = best[i] + cost, i
    pieces: list[list[Word]] = []
    j = n
    while j > 0:
        pieces.append(words[cut[j] : j])
        j = cut[j]
    return pieces[::-1]


def cues_from(transcript: Transcript, duration: float | None = None) -> list[Cue]:
    """Cues for the transcript's words: inside the take, in order, never overlapping."""
    groups = [piece for phrase in _phrases(_words(transcript)) for piece in _partition(phrase)]
    limit = math.inf if duration is None else duration
    cues: list[Cue] = []
    for k, group in enumerate(groups):
        start = max(group[0].start, cues[-1].end if cues else 0.0)
        following = groups[k + 1][0].start if k + 1 < len(groups) else math.inf
        end = max(group[-1].end, start + MIN_DURATION)
        if following > start:
            end = min(end, following)
        end = min(end, start + MAX_DURATION, limit)
        if end <= start:
            continue
        text = _text(group)
        lines = lines_of(text) or [text]  # a single word too long for a line stays whole
        cues.append(Cue(round(start, 3), round(end, 3), "\n".join(lines)))
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
