"""Notification bodies, keys and markers: what is a take, and what is ignored."""

from __future__ import annotations

import base64
import json

import pytest

from consumer.errors import BadMarker
from consumer.events import parse_r2, parse_s3
from consumer.keys import KeyLayout, TakeRef
from consumer.marker import parse_marker
from consumer.sources.cloudflare import decode_body
from tests.support.cfqueue import r2_event

LAYOUT = KeyLayout("recordings", "done.json")


def test_marker_key_names_its_take() -> None:
    assert LAYOUT.marker_take("recordings/m1/2/u_1/done.json") == TakeRef("m1", "2", "u_1")
    assert LAYOUT.status_key(TakeRef("m1", "2", "u")) == "recordings/m1/2/status_u.json"


def test_every_key_of_a_take_comes_from_one_layout() -> None:
    """A prefix given with slashes is the same layout; outputs keep the original names."""
    ref = TakeRef("m", "2", "u")
    keys = KeyLayout("/recs/", "end.json")
    assert keys.root == "recs/" and keys.take_prefix(ref) == "recs/m/2/u/"
    assert keys.marker_key(ref) == "recs/m/2/u/end.json"
    assert keys.lock_key(ref) == "recs/m/2/u/.lock"
    assert keys.marker_take("recs/m/2/u/end.json") == ref
    assert keys.output_keys(ref, "m4a") == {
        "video": "recs/m/2/final_video_u.mp4",
        "srt": "recs/m/2/subtitle_u.srt",
        "vtt": "recs/m/2/subtitle_u.vtt",
        "transcript": "recs/m/2/transcript_u.json",
        "audio": "recs/m/2/final_audio_u.m4a",
    }
    assert "audio" not in keys.output_keys(ref, "none")


@pytest.mark.parametrize(
    "key",
    [
        "recordings/../x/u/done.json",
        "recordings/m/../u/done.json",
        "recordings/m/./u/done.json",
        "recordings/m/t/u/../done.json",
        "recordings/m/t/u/x/done.json",
        "recordings/m/t/done.json",
        "recordings/m/t/u%2F/done.json",
        "recordings/m/t/" + "u" * 129 + "/done.json",
        "other/m/t/u/done.json",
        "recordings//t/u/done.json",
        "recordings/m/t/u/done.json.tmp",
        "/recordings/m/t/u/done.json",
    ],
)
def test_hostile_and_foreign_keys_are_not_takes(key: str) -> None:
    """Anything outside the layout is ignored, never turned into a path."""
    assert LAYOUT.marker_take(key) is None


@pytest.mark.parametrize("action", ["PutObject", "CopyObject", "CompleteMultipartUpload"])
def test_r2_create_actions_are_creations(action: str) -> None:
    event = parse_r2(r2_event("recordings/m/t/u/done.json", 5, "abc", action))
    assert event is not None and event.created and event.size == 5 and event.etag == "abc"


def test_r2_delete_and_garbage() -> None:
    deleted = parse_r2({"action": "DeleteObject", "object": {"key": "k"}})
    assert deleted is not None and not deleted.created
    junks: list[object] = [None, "x", [], {"object": "k"}, {"object": {"key": 3}}]
    for junk in junks:
        assert parse_r2(junk) is None


def test_s3_records_are_url_decoded() -> None:
    body = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {"object": {"key": "recordings/m+1/t/u%2Bx/done.json", "size": 2}},
            }
        ]
    }
    [event] = parse_s3(body)
    assert event.key == "recordings/m 1/t/u+x/done.json" and event.created


def test_s3_test_event_and_sns_envelope() -> None:
    assert parse_s3({"Event": "s3:TestEvent", "Service": "Amazon S3"}) == []
    inner = {
        "Records": [
            {"eventName": "ObjectCreated:CompleteMultipartUpload", "s3": {"object": {"key": "a/b"}}}
        ]
    }
    [event] = parse_s3({"Type": "Notification", "Message": json.dumps(inner)})
    assert event.key == "a/b"


def test_queue_bodies_base64_plain_text_and_unreadable() -> None:
    """json bodies may come base64 or plain; text is plain; v8 and junk are None."""
    event = r2_event("recordings/m/t/u/done.json")
    as_b64 = base64.b64encode(json.dumps(event).encode()).decode()
    assert decode_body(as_b64, "json") == event
    assert decode_body(json.dumps(event), "json") == event
    assert decode_body(json.dumps(event), "text") == event
    assert decode_body(as_b64, "bytes") == event
    assert decode_body("AAAA", "v8") is None
    assert decode_body("not json at all", "text") is None
    assert decode_body(None, "json") is None


def test_marker_options_are_strict() -> None:
    """Counts and options read; "false" is not a boolean; a path is not a model."""
    options = parse_marker(b'{"video_chunks": 3, "skip_transcription": true, "x": 1}')
    assert options.video_chunks == 3 and options.skip_transcription and options.cleanup
    assert parse_marker(b"").video_chunks is None
    for bad in (
        b'{"skip_transcription": "false"}',
        b'{"video_chunks": "3"}',
        b'{"whisper_model": "/etc/passwd"}',
        b"[1]",
        b"{nope",
        b" " * 70_000,
    ):
        with pytest.raises(BadMarker):
            parse_marker(bad)
