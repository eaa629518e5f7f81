"""Cues from a transcript, and the SRT, WebVTT and JSON writers, read back by real parsers."""

from __future__ import annotations

import io
import itertools
import json

import srt
import webvtt

from pipeline.captions import Cue, cues_from, to_json, to_srt, to_vtt
from pipeline.voice import Segment, Transcript, Word

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


def timed(
    start: float, text: str, pace: float = 0.3, pauses: dict[int, float] | None = None
) -> Segment:
    """A segment whose words are spoken one every ``pace`` seconds from ``start``, with
    ``pauses`` (seconds after word n) where given."""
    words = []
    t = start
    for n, word in enumerate(text.split()):
        words.append(Word(round(t, 3), round(t + pace * 0.9, 3), " " + word, 0.9))
        t += pace + (pauses or {}).get(n, 0.0)
    return Segment(words[0].start, words[-1].end, " " + text, tuple(words))


def shape_ok(cues: list[Cue]) -> None:
    for cue, following in itertools.zip_longest(cues, cues[1:]):
        lines = cue.text.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines), cue
        assert cue.end - cue.start <= 7.0, cue
        if following is not None:
            assert cue.end <= following.start
            assert cue.end - cue.start >= min(1.0, following.start - cue.start), cue


def test_long_segments_become_cues_of_two_short_lines() -> None:
    """At most two lines of 42 characters per cue, at most 7 s; every word, in order."""
    cues = cues_from(transcript(timed(1.0, LONG)))
    assert len(cues) >= 2
    shape_ok(cues)
    assert " ".join(c.text.replace("\n", " ") for c in cues) == LONG


def test_a_cue_starts_when_its_first_word_is_spoken() -> None:
    """Not when the segment says it starts: Whisper's segments begin in the silence before."""
    segment = timed(4.0, "Thanks everyone and see you next Tuesday.")
    early = Segment(0.5, segment.end, segment.text, segment.words)
    cues = cues_from(transcript(early))
    assert cues[0].start == 4.0
    assert cues[-1].end == segment.words[-1].end


def test_cues_break_at_sentences_then_clauses() -> None:
    """A sentence end, then a comma, are where cues break; lines break at a comma too."""
    text = (
        "The design team will try a different layout next week. "
        "To sum up, the release is on track, the offsite may move, "
        "and the export button needs some work before Friday."
    )
    cues = cues_from(transcript(timed(0.0, text)))
    shape_ok(cues)
    assert [c.text.replace("\n", " ") for c in cues] == [
        "The design team will try a different layout next week.",
        "To sum up, the release is on track, the offsite may move,",
        "and the export button needs some work before Friday.",
    ]
    assert cues[1].text == "To sum up, the release is on track,\nthe offsite may move,"


def test_a_pause_breaks_where_no_punctuation_does() -> None:
    """A pause ends a phrase even when Whisper wrote no full stop there."""
    text = "we should put it on the list for the summer the notes will be in the shared folder"
    cues = cues_from(transcript(timed(0.0, text, pauses={9: 0.4})))
    assert [c.text.replace("\n", " ") for c in cues] == [
        "we should put it on the list for the summer",
        "the notes will be in the shared folder",
    ]


def test_a_long_pause_always_ends_a_cue() -> None:
    """Nothing stays on screen over silence: a 2 s pause splits even a short sentence."""
    cues = cues_from(transcript(timed(0.0, "Well, let me think about it", pauses={1: 2.0})))
    assert [c.text for c in cues] == ["Well, let", "me think about it"]
    assert cues[0].end <= 0.6 + 1.0


def test_a_short_sentence_is_held_for_a_second_or_joins_the_next() -> None:
    """No cue flashes by: "Thanks." alone is held a second, or read with what follows."""
    alone = cues_from(transcript(timed(0.0, "Thanks."), timed(5.0, "See you next week.")))
    assert [(c.start, c.text) for c in alone] == [(0.0, "Thanks."), (5.0, "See you next week.")]
    assert alone[0].end == 1.0
    close = cues_from(transcript(timed(0.0, "Yes. See you next week.", pace=0.25)))
    assert [c.text for c in close] == ["Yes. See you next week."]


def test_cues_stay_inside_the_take_and_never_overlap() -> None:
    """A cue ends where the next one's first word starts, and none outlasts the take."""
    cues = cues_from(
        transcript(
            Segment(0.0, 2.0, "one.", (Word(0.0, 2.0, " one.", 0.9),)),
            Segment(1.5, 3.0, "Two.", (Word(1.5, 3.0, " Two.", 0.9),)),
            Segment(9.5, 12, "Late.", (Word(9.5, 12.0, " Late.", 0.9),)),
        ),
        duration=10.0,
    )
    assert [(c.start, c.end) for c in cues] == [(0.0, 1.5), (1.5, 3.0), (9.5, 10.0)]


def test_segments_without_word_times_still_give_cues() -> None:
    """Words are spread over the segment by their length; the cues stay inside it."""
    cues = cues_from(transcript(Segment(1.0, 9.0, LONG)))
    shape_ok(cues)
    assert cues[0].start == 1.0 and cues[-1].end == 9.0
    assert " ".join(c.text.replace("\n", " ") for c in cues) == LONG


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
