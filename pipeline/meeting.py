"""The meeting's transcript: every participant of a take in one timeline.

Each participant uploads a take of their own and gets a transcript of their own
(``transcript_{user}.json``). This module merges those into one record of who said what,
in order, and writes it as JSON, SRT (the speaker's id before each cue), WebVTT (voice
spans, ``<v alice>``) and plain text (a paragraph per change of speaker).

Alignment: recordings start at different moments. When every participant with a
transcript says when its recorder started (``started_at``, seconds since the epoch),
their timelines are aligned on it and the meeting's time 0 is the earliest start;
otherwise each take starts at 0 and the record says ``aligned: false``. Overlapping
speech stays as it was spoken: segments are ordered by start time and may overlap.

Pure: plain values in, text out. Reading and writing the bucket is the consumer's work.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline import captions
from pipeline.captions import Cue
from pipeline.voice import Segment, Transcript, Word

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Participant:
    """One user's take of the meeting, as far as it has got.

    ``state`` is the take's status (``done``, ``processing``, ``failed``, ``skipped``) or
    ``missing`` when the user has chunks but no status yet. ``transcript`` is the user's
    ``transcript_{user}.json`` body, present once the take is done with captions.
    """

    user_id: str
    state: str
    started_at: float | None = None
    transcript: Mapping[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class SpokenSegment:
    """A segment of one speaker, in the meeting's time."""

    user_id: str
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Meeting:
    meeting_id: str
    take: str
    aligned: bool
    participants: tuple[Participant, ...]
    offsets: Mapping[str, float]
    segments: tuple[SpokenSegment, ...] = field(default=())

    @property
    def speakers(self) -> list[str]:
        return [p.user_id for p in self.participants if p.transcript is not None]


def transcript_from_json(body: Mapping[str, Any]) -> Transcript:
    """A ``Transcript`` back from the JSON that ``captions.to_json`` wrote."""
    segments = []
    for item in body.get("segments") or []:
        words = tuple(
            Word(float(w["start"]), float(w["end"]), str(w["word"]), float(w["probability"]))
            for w in item.get("words") or []
        )
        segments.append(Segment(float(item["start"]), float(item["end"]), str(item["text"]), words))
    return Transcript(
        language=str(body.get("language") or ""),
        engine=str(body.get("engine") or ""),
        model=str(body.get("model_used") or ""),
        duration=float(body.get("duration") or 0.0),
        segments=segments,
    )


def merge(meeting_id: str, take: str, participants: Iterable[Participant]) -> Meeting:
    """The meeting's timeline from its participants, ordered by user id for stable output."""
    people = tuple(sorted(participants, key=lambda p: p.user_id))
    speaking = [p for p in people if p.transcript is not None]
    starts = [p.started_at for p in speaking]
    aligned = bool(speaking) and all(s is not None for s in starts)
    zero = min(s for s in starts if s is not None) if aligned else 0.0
    offsets = {
        p.user_id: round((p.started_at or 0.0) - zero, 3) if aligned else 0.0 for p in speaking
    }
    segments = []
    for p in speaking:
        assert p.transcript is not None
        shift = offsets[p.user_id]
        for s in transcript_from_json(p.transcript).segments:
            if not s.text.strip():
                continue
            words = tuple(
                Word(w.start + shift, w.end + shift, w.word, w.probability) for w in s.words
            )
            segments.append(
                SpokenSegment(p.user_id, s.start + shift, s.end + shift, s.text.strip(), words)
            )
    segments.sort(key=lambda s: (s.start, s.user_id, s.end))
    return Meeting(meeting_id, take, aligned, people, offsets, tuple(segments))


def to_json(meeting: Meeting) -> str:
    """The merged transcript; its shape is ``docs/meeting-transcript.schema.json``."""
    body = {
        "schema": SCHEMA_VERSION,
        "meeting_id": meeting.meeting_id,
        "take": meeting.take,
        "aligned": meeting.aligned,
        "participants": [
            {
                "user_id": p.user_id,
                "state": p.state,
                "included": p.transcript is not None,
                "started_at": p.started_at,
                "offset": meeting.offsets.get(p.user_id),
                **({"error": p.error} if p.error else {}),
            }
            for p in meeting.participants
        ],
        "missing": [
            p.user_id for p in meeting.participants if p.state in ("missing", "processing")
        ],
        "failed": [p.user_id for p in meeting.participants if p.state == "failed"],
        "segments": [
            {
                "user_id": s.user_id,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "words": [
                    {"start": round(w.start, 3), "end": round(w.end, 3), "word": w.word}
                    for w in s.words
                ],
            }
            for s in meeting.segments
        ],
    }
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


@dataclass(frozen=True)
class _SpeakerCue:
    user_id: str
    cue: Cue


def _cues(meeting: Meeting) -> list[_SpeakerCue]:
    """Each speaker's captions (cut as the take's own are), in the meeting's time."""
    found: list[_SpeakerCue] = []
    for user_id in meeting.speakers:
        mine = [s for s in meeting.segments if s.user_id == user_id]
        transcript = Transcript(
            "", "", "", 0.0, [Segment(s.start, s.end, s.text, s.words) for s in mine]
        )
        found.extend(_SpeakerCue(user_id, cue) for cue in captions.cues_from(transcript))
    found.sort(key=lambda c: (c.cue.start, c.user_id))
    return found


def to_srt(meeting: Meeting) -> str:
    """SubRip with the speaker's id in front of each cue: ``alice: Good morning``."""
    return captions.to_srt([_labelled(c, f"{c.user_id}: ") for c in _cues(meeting)])


def to_vtt(meeting: Meeting) -> str:
    """WebVTT with voice spans: ``<v alice>Good morning``."""
    return captions.to_vtt([_labelled(c, f"<v {c.user_id}>") for c in _cues(meeting)])


def _labelled(item: _SpeakerCue, label: str) -> Cue:
    return Cue(item.cue.start, item.cue.end, label + item.cue.text)


def to_text(meeting: Meeting) -> str:
    """Plain text, one paragraph per change of speaker: ``alice: ...``."""
    paragraphs: list[tuple[str, list[str]]] = []
    for s in meeting.segments:
        if paragraphs and paragraphs[-1][0] == s.user_id:
            paragraphs[-1][1].append(s.text)
        else:
            paragraphs.append((s.user_id, [s.text]))
    return "".join(f"{user}: {' '.join(texts)}\n\n" for user, texts in paragraphs)
