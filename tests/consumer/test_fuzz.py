"""Hostile input, generated (Hypothesis): object keys, notification bodies of every source,
marker bodies; then the service itself fed batches of random messages (issue 11, "make the
proof permanent"). Properties: the parsers raise nothing but their documented errors, no
key outside the layout ever names a take (so never a path), and the service acknowledges
every message and writes nothing but the layout's keys.

Example counts are CI-sized (``EXAMPLES``); raise them to search longer:
``HYPOTHESIS_EXAMPLES=5000 pytest tests/consumer/test_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.backends import make_source
from consumer.errors import BadMarker
from consumer.events import ObjectEvent, parse_r2, parse_s3
from consumer.keys import KeyLayout, TakeRef, valid_id
from consumer.marker import MAX_MARKER_BYTES, MarkerOptions, parse_marker
from consumer.service import Service
from consumer.sources.cloudflare import decode_body
from tests.support.cfqueue import QueueEmulator, r2_event
from tests.support.inprocess import cloudflare_settings, until
from tests.support.s3 import s3, s3_storage

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False)
KEYS = KeyLayout()

# ----- strategies -----

ids = st.from_regex(r"\A[A-Za-z0-9._-]{1,12}\Z").filter(valid_id)
segments = st.one_of(
    ids,
    st.sampled_from(["", ".", "..", "...", " ", "%2F", "a/b", "\x00", "é", "\u202e", "~"]),
    st.text(max_size=20),
    st.text(alphabet="a", min_size=120, max_size=300),
)
keys = st.one_of(
    st.text(max_size=200),
    st.lists(segments, min_size=0, max_size=7).map("/".join),
    st.tuples(st.lists(segments, min_size=1, max_size=5), st.sampled_from(["done.json", "x"])).map(
        lambda t: "/".join(["recordings", *t[0], t[1]])
    ),
    st.tuples(ids, ids, ids).map(lambda t: f"recordings/{t[0]}/{t[1]}/{t[2]}/done.json"),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
deep = st.integers(min_value=1, max_value=50_000).map(lambda n: "[" * n + "]" * n)


@st.composite
def r2_bodies(draw: st.DrawFn) -> Any:
    """R2 notifications, whole or with any part replaced by junk."""
    body: dict[str, Any] = r2_event(draw(keys))
    for field in draw(st.sets(st.sampled_from(["action", "object", "bucket", "eventTime"]))):
        body[field] = draw(json_values)
    if draw(st.booleans()):
        body["object"] = {"key": draw(json_values), "size": draw(json_values)}
    return body


@st.composite
def s3_bodies(draw: st.DrawFn) -> Any:
    """S3 notifications as SQS delivers them (URL-encoded keys), in SNS envelopes or not."""
    records: list[Any] = [
        {
            "eventName": draw(st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete", ""])),
            "s3": {
                "bucket": {"name": draw(st.text(max_size=10))},
                "object": {"key": urllib.parse.quote_plus(draw(keys)), "size": draw(json_values)},
            },
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    records += draw(st.lists(json_values, max_size=2))
    body: Any = {"Records": records}
    if draw(st.booleans()):
        body = {"Type": "Notification", "Message": json.dumps(body)}
    return body


any_body = st.one_of(r2_bodies(), s3_bodies(), json_values, deep, st.text(max_size=100))

# ----- parsers -----


def assert_event(event: ObjectEvent) -> None:
    assert isinstance(event.key, str) and isinstance(event.created, bool)
    assert event.size is None or isinstance(event.size, int)
    assert event.bucket is None or isinstance(event.bucket, str)


@FUZZ
@given(body=any_body, content_type=st.sampled_from(["json", "text", "bytes", "v8", None]))
def test_queue_bodies_never_raise(body: Any, content_type: str | None) -> None:
    """Every body as Cloudflare may deliver it (as is, JSON text, base64 of it)."""
    text = body if isinstance(body, str) else json.dumps(body)
    for given_body in (body, text, base64.b64encode(text.encode()).decode()):
        event = parse_r2(decode_body(given_body, content_type))
        if event is not None:
            assert_event(event)


@FUZZ
@given(body=st.one_of(s3_bodies(), json_values, deep.map(lambda d: {"Message": d})))
def test_s3_and_sns_bodies_never_raise(body: Any) -> None:
    for event in parse_s3(body):
        assert_event(event)


@FUZZ
@given(key=st.tuples(ids, ids, ids, keys).map(lambda t: "recordings/{}/{}/{}/{}".format(*t)))
def test_s3_keys_come_back_url_decoded(key: str) -> None:
    record = {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": quote_plus(key)}}}
    body = {"Records": [record]}
    [event] = parse_s3({"Message": json.dumps(body)})
    assert event.key == key and event.created


@FUZZ
@given(key=keys)
def test_no_key_outside_the_layout_is_a_take(key: str) -> None:
    """``split`` and ``marker_take`` take any text; what they accept are valid ids whose
    keys rebuild exactly, and whose folder stays inside a work folder."""
    found = KEYS.split(key)
    ref = KEYS.marker_take(key)
    if found is None:
        assert ref is None
        return
    taken, name = found
    assert all(valid_id(p) for p in (taken.meeting_id, taken.take, taken.user_id))
    assert KEYS.take_prefix(taken) + name == key and "/" not in name
    local = PurePosixPath("/work") / taken.meeting_id / taken.take / taken.user_id / name
    assert ".." not in local.parts and str(local).startswith("/work/")
    if ref is not None:
        assert ref == taken and key == KEYS.marker_key(ref)


@FUZZ
@given(ref=st.builds(TakeRef, ids, ids, ids))
def test_every_key_the_layout_builds_splits_back(ref: TakeRef) -> None:
    assert KEYS.marker_take(KEYS.marker_key(ref)) == ref
    assert KEYS.split(KEYS.lock_key(ref)) == (ref, ".lock")


def _marker_bodies() -> st.SearchStrategy[bytes]:
    fields = st.fixed_dictionaries(
        {},
        optional={
            "video_chunks": json_values | st.integers(),
            "audio_chunks": json_values | st.integers(),
            "whisper_model": json_values | st.sampled_from(["tiny.en", "base", "../../x"]),
            "language": json_values | st.sampled_from(["en", "EN", "english"]),
            "skip_transcription": json_values,
            "cleanup": json_values,
        },
    )
    return st.one_of(
        st.binary(max_size=300),
        (fields | json_values).map(lambda v: json.dumps(v).encode()),
        deep.map(str.encode),
        st.integers(MAX_MARKER_BYTES - 10, MAX_MARKER_BYTES + 10).map(
            lambda n: json.dumps({"pad": "x" * n}).encode()
        ),
    )


@FUZZ
@given(body=_marker_bodies())
def test_marker_bodies_parse_or_are_bad_markers(body: bytes) -> None:
    try:
        options = parse_marker(body)
    except BadMarker as e:
        error = str(e)
    else:
        error = ""
    if error:
        assert error.startswith("marker") and len(error) < 1000
        return
    assert isinstance(options, MarkerOptions) and len(body) <= MAX_MARKER_BYTES
    for count in (options.video_chunks, options.audio_chunks):
        assert count is None or (isinstance(count, int) and 0 <= count <= 1_000_000)


# ----- the service, fed random batches -----

_queues = itertools.count(1)


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[Any, str]]:
    """A batch of messages: bodies of every kind, content types right or wrong, and
    markers of real takes among them."""
    found = []
    for _ in range(draw(st.integers(5, 30))):
        body = draw(st.one_of(any_body, st.just("marker")))
        ctype = draw(st.sampled_from(["json", "json", "text", "bytes", "v8"]))
        found.append((body, ctype))
    return found


@settings(
    max_examples=max(3, EXAMPLES // 100),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=batches(), marker=_marker_bodies())
def test_the_service_acknowledges_every_random_message(
    emulator: QueueEmulator,
    bucket: str,
    tmp_path_factory: pytest.TempPathFactory,
    batch: list[tuple[Any, str]],
    marker: bytes,
) -> None:
    """Every message acknowledged (none retried, none left), only keys of the layout in
    the bucket, only work folders under WORK_DIR; a marker's take ends final."""
    queue = f"{next(_queues):032x}"
    emulator.create_queue(queue)
    work = tmp_path_factory.mktemp("work")
    ref = TakeRef("fuzz", queue[-6:], "u")
    s3().put_object(Bucket=bucket, Key=KEYS.marker_key(ref), Body=marker)
    for body, ctype in batch:
        if body == "marker":
            body, ctype = r2_event(KEYS.marker_key(ref), bucket=bucket), "json"
        if ctype == "json" and isinstance(body, str):
            body = {"text": body[:1000]}
        emulator.send(queue, body, content_type=ctype)

    async def run() -> None:
        settings_ = cloudflare_settings(
            emulator,
            bucket,
            work,
            cf_queue_id=queue,
            sweep_interval_seconds=0,
            chunk_wait_seconds=0,
            batch_size=10,
            concurrency=2,
        )
        service = Service(settings_, s3_storage(bucket), make_source(settings_))
        task = asyncio.create_task(service.run())
        try:
            await until(lambda: emulator.backlog(queue) == 0, 60, "every message settled")
            await until(lambda: not service.deliveries, 60, "every take over")
        finally:
            service.stop()
            await asyncio.wait_for(task, 60)

    asyncio.run(run())
    assert len(emulator.acked(queue)) == len(batch)
    assert emulator.queues[queue].retried == []
    listed = s3().list_objects_v2(Bucket=bucket).get("Contents", [])
    for obj in listed:
        # A take's own keys, or the ones beside it: its status and the meeting's files.
        beside = re.sub(r"/(status_u\.json|transcript\.(json|srt|vtt|txt))$", "/u/x", obj["Key"])
        split = KEYS.split(obj["Key"]) or KEYS.split(beside)
        assert split is not None, obj["Key"]
    for path in Path(work).rglob("*"):
        assert path.resolve().is_relative_to(Path(work).resolve())
