"""The meeting's transcript: merging participants' transcripts into one timeline."""

from __future__ import annotations

import io
import json
from typing import Any

import jsonschema
import pytest
import srt
import webvtt

from pipeline import meeting
from pipeline.meeting import Participant
from tests.support.paths import ROOT

SCHEMA = json.loads((ROOT / "docs" / "meeting-transcript.schema.json").read_text())


def said(*segments: tuple[float, float, str]) -> dict[str, Any]:
    """A ``transcript_{user}.json`` body with these segments, one word timed per word."""
    items = []
    for i, (start, end, text) in enumerate(segments):
        words = text.split()
        step = (end - start) / len(words)
        items.append(
            {
                "id": i,
                "start": start,
                "end": end,
                "text": text,
                "words": [
                    {
                        "start": start + k * step,
                        "end": start + (k + 1) * step,
                        "word": " " + w,
                        "probability": 0.9,
                    }
                    for k, w in enumerate(words)
                ],
            }
        )
    return {
        "language": "en",
        "engine": "faster-whisper",
        "model_used": "tiny.en",
        "segments": items,
    }


ALICE = Participant("alice", "done", 1000.0, said((0.5, 2.0, "Good morning everyone.")))
BOB = Participant("bob", "done", 1001.5, said((1.0, 3.0, "Morning Alice, can you hear me?")))
CAROL = Participant("carol", "done", 1003.0, said((0.2, 1.0, "Yes."), (4.0, 5.5, "Let us start.")))


def test_aligned_on_the_recorders_start() -> None:
    """Every participant gave started_at: times move by the distance from the first start."""
    m = meeting.merge("m1", "1", [CAROL, ALICE, BOB])
    assert m.aligned
    assert m.offsets == {"alice": 0.0, "bob": 1.5, "carol": 3.0}
    order = [(s.user_id, s.start) for s in m.segments]
    assert order == [("alice", 0.5), ("bob", 2.5), ("carol", 3.2), ("carol", 7.0)]
    assert m.segments[1].words[0].start == pytest.approx(2.5)


def test_without_started_at_each_take_starts_at_zero_and_says_so() -> None:
    body = json.loads(
        meeting.to_json(
            meeting.merge("m1", "1", [ALICE, Participant("bob", "done", None, BOB.transcript)])
        )
    )
    assert body["aligned"] is False
    assert [s["start"] for s in body["segments"]] == [0.5, 1.0]
    jsonschema.validate(body, SCHEMA)


def test_overlapping_speech_stays_and_text_interleaves_by_start() -> None:
    """Two speakers at once: both kept, ordered by start, a paragraph per change of speaker."""
    a = Participant(
        "alice", "done", 0.0, said((0.0, 4.0, "I think we should ship."), (5.0, 6.0, "Agreed."))
    )
    b = Participant("bob", "done", 0.0, said((2.0, 3.0, "Wait.")))
    m = meeting.merge("m1", "1", [a, b])
    assert [(s.user_id, s.start, s.end) for s in m.segments] == [
        ("alice", 0.0, 4.0),
        ("bob", 2.0, 3.0),
        ("alice", 5.0, 6.0),
    ]
    assert (
        meeting.to_text(m) == "alice: I think we should ship.\n\nbob: Wait.\n\nalice: Agreed.\n\n"
    )


def test_subtitle_files_name_the_speaker() -> None:
    m = meeting.merge("m1", "1", [ALICE, BOB, CAROL])
    cues = list(srt.parse(meeting.to_srt(m)))
    assert [c.content.split(":")[0] for c in cues] == ["alice", "bob", "carol", "carol"]
    assert cues[0].content == "alice: Good morning everyone."
    assert [c.start.total_seconds() for c in cues] == sorted(c.start.total_seconds() for c in cues)
    vtt = meeting.to_vtt(m)
    captions = webvtt.from_buffer(io.StringIO(vtt)).captions
    assert captions[1].raw_text.startswith("<v bob>Morning Alice")
    assert [c.voice for c in captions] == ["alice", "bob", "carol", "carol"]


def test_missing_and_failed_participants_are_listed_never_dropped() -> None:
    parts = [
        ALICE,
        Participant(
            "bob", "failed", 1001.5, None, error="corrupt_media: video_3.webm cannot be read"
        ),
        Participant("dave", "processing", None),
        Participant("erin", "missing"),
    ]
    body = json.loads(meeting.to_json(meeting.merge("m1", "1", parts)))
    jsonschema.validate(body, SCHEMA)
    assert body["failed"] == ["bob"]
    assert body["missing"] == ["dave", "erin"]
    assert [p["user_id"] for p in body["participants"]] == ["alice", "bob", "dave", "erin"]
    assert body["participants"][1]["error"].startswith("corrupt_media")
    assert {s["user_id"] for s in body["segments"]} == {"alice"}
    # Only the participants with words count for alignment: alice alone is aligned.
    assert body["aligned"] is True


def test_merge_is_the_same_whatever_order_the_takes_come_in() -> None:
    outputs = {
        meeting.to_json(meeting.merge("m1", "1", order))
        for order in ([ALICE, BOB, CAROL], [CAROL, BOB, ALICE], [BOB, CAROL, ALICE])
    }
    assert len(outputs) == 1
    body = json.loads(outputs.pop())
    jsonschema.validate(body, SCHEMA)
    assert len(body["segments"]) == 4
