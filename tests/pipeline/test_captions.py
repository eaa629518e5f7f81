"""Cues from a transcript, and the SRT, WebVTT and JSON writers, read back by real parsers."""

from __future__ import annotations

import io
import itertools
import json

import srt
import webvtt

from pipeline.captions import Cue, cues_from, to_json, to_srt, to_vtt
from pipeline.transcribe import Segment, Transcript, Word

LONG = (
    "This sentence is long enough that it cannot fit on two caption lines of forty two "
    "characters each, so it has to be split into more than one cue for reading"
)


def transcript(*segments: Segment) -> Transcript:
    return Transcript("en", "faster-whisper", "tiny.en", 10.0, list(segments))


def test_srt_parses_back_and_rounds_to_the_millisecond() -> None:
    """Times are rounded (1.9996 s is 00:00:02,000), not truncated (00:00:01,999)."""
    cues = [Cue(0.0, 1.9996, "Hello"), Cue(2.5, 3.25, "two\nlines")]
    parsed = list(srt.parse(to_srt(cues)))
    assert [p.content for p in parsed] == ["Hello", "two\nlines"]
    assert parsed[0].end.total_seconds() == 2.0
    assert parsed[1].start.total_seconds() == 2.5
    assert "00:00:02,000" in to_srt(cues)


def test_vtt_parses_back() -> None:
    cues = [Cue(0.0, 1.5, "Hello"), Cue(61.0, 62.125, "a minute in")]
    parsed = webvtt.from_buffer(io.StringIO(to_vtt(cues)))
    assert [(c.start, c.end, c.text) for c in parsed.captions] == [
        ("00:00:00.000", "00:00:01.500", "Hello"),
        ("00:01:01.000", "00:01:02.125", "a minute in"),
    ]


def test_long_segments_become_cues_of_two_short_lines() -> None:
    """At most two lines of about 42 characters per cue; the time is shared, in order."""
    cues = cues_from(transcript(Segment(1.0, 9.0, LONG)))
    assert len(cues) >= 2
    for cue in cues:
        lines = cue.text.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines)
    assert cues[0].start == 1.0 and cues[-1].end == 9.0
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))
    assert " ".join(c.text.replace("\n", " ") for c in cues) == LONG


def test_cues_stay_inside_the_take_and_never_overlap() -> None:
    cues = cues_from(
        transcript(Segment(0.0, 2.0, "one"), Segment(1.5, 3.0, "two"), Segment(9.5, 12, "late")),
        duration=10.0,
    )
    assert [(c.start, c.end) for c in cues] == [(0.0, 2.0), (2.0, 3.0), (9.5, 10.0)]


def test_json_has_the_original_fields_plus_words_engine_duration() -> None:
    words = (Word(0.0, 0.4, " Hi", 0.9), Word(0.5, 0.9, " there", 0.8))
    body = json.loads(
        to_json(
            transcript(Segment(0.0, 0.9, " Hi there", words)),
            meeting_id="m",
            take="1",
            user_id="u",
            timestamp="t",
        )
    )
    for name in (
        "meeting_id",
        "take",
        "user_id",
        "timestamp",
        "model_used",
        "language",
        "full_text",
        "segments",
        "engine",
        "duration",
    ):
        assert name in body
    assert body["full_text"] == "Hi there"
    assert body["segments"][0] == {
        "id": 0,
        "start": 0.0,
        "end": 0.9,
        "text": "Hi there",
        "words": [
            {"start": 0.0, "end": 0.4, "word": " Hi", "probability": 0.9},
            {"start": 0.5, "end": 0.9, "word": " there", "probability": 0.8},
        ],
    }
