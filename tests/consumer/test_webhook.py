"""The completion notice: signed with a timestamp, one delivery id across retries, retried
only when retrying can help, sent after the final status, never failing the take."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consumer.keys import KeyLayout, TakeRef
from consumer.settings import SettingsError, load_settings
from consumer.webhook import Notifier, sign
from tests.support.inprocess import take_job
from tests.support.paths import ROOT
from tests.support.receiver import Received, Receiver
from tests.support.s3 import s3, s3_storage
from tests.support.takes import make_take

SECRET = "hook-secret-123"
REF = TakeRef("m1", "2", "u3")
KEYS = KeyLayout()


def readme_verify() -> Callable[[bytes, bytes, str, str], bool]:
    """The receiver's check, exactly as the README's "Webhook" section shows it."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Webhook", 1)[1].split("\n### ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)
    return scope["verify"]  # type: ignore[no-any-return]


def headers_of(got: Received) -> tuple[str, str, str]:
    h = got.headers
    return h["X-Whisp-Delivery"], h["X-Whisp-Timestamp"], h["X-Whisp-Signature"]


async def test_notice_is_signed_with_a_timestamp_and_retried_under_one_delivery_id() -> None:
    with Receiver(answers=[(500, {}), (503, {})]) as hook:
        notifier = Notifier(hook.url + "/done/{meeting_id}/{take}/{user_id}", SECRET, backoff=0.01)
        result = await notifier.notify(REF, "completed", {"video": "k.mp4"}, None)
    assert result["state"] == "delivered" and result["attempts"] == 3
    assert [g.path for g in hook.got] == ["/done/m1/2/u3"] * 3
    deliveries = {headers_of(g)[0] for g in hook.got}
    assert deliveries == {result["delivery"]}  # the same id on every retry of one notice
    delivery, timestamp, signature = headers_of(hook.got[-1])
    assert abs(int(timestamp) - time.time()) < 10
    assert signature == sign(hook.got[-1].body, timestamp, SECRET)
    assert json.loads(hook.got[-1].body) == {
        "status": "completed",
        "meeting_id": "m1",
        "take": "2",
        "user_id": "u3",
        "outputs": {"video": "k.mp4"},
        "error": None,
    }
    again = await notifier_to_nowhere().notify(REF, "completed", {}, None)
    assert again["delivery"] != delivery  # another notice, another id


def notifier_to_nowhere() -> Notifier:
    return Notifier("http://127.0.0.1:9/x", SECRET, attempts=1, timeout=2)


@pytest.mark.parametrize("refused", [400, 401, 404, 410, 422])
async def test_a_4xx_answer_is_not_sent_again(refused: int) -> None:
    with Receiver(answers=[(refused, {})] * 5) as hook:
        result = await Notifier(hook.url + "/x", SECRET, backoff=0.01).notify(
            REF, "failed", {}, "corrupt"
        )
    assert len(hook.got) == 1
    assert result["state"] == "failed" and result["error"] == f"HTTP {refused}"


async def test_408_and_429_are_retried_and_retry_after_is_honoured() -> None:
    with Receiver(answers=[(408, {}), (429, {"Retry-After": "1"})]) as hook:
        started = time.monotonic()
        result = await Notifier(hook.url + "/x", SECRET, backoff=0.01).notify(
            REF, "failed", {}, "x"
        )
        waited = time.monotonic() - started
    assert result["state"] == "delivered" and len(hook.got) == 3
    assert waited >= 0.95  # the receiver's Retry-After, not the 0.01 s backoff


async def test_a_notice_that_keeps_failing_is_reported_not_raised() -> None:
    with Receiver(answers=[(500, {})] * 10) as hook:
        result = await Notifier(hook.url + "/x", SECRET, attempts=3, backoff=0.01).notify(
            REF, "failed", {}, "corrupt"
        )
    assert result["state"] == "failed" and result["attempts"] == 3
    assert result["error"] == "HTTP 500" and len(hook.got) == 3


async def test_the_readme_s_check_accepts_whisp_s_notices_and_refuses_forgeries() -> None:
    verify = readme_verify()
    with Receiver() as hook:
        await Notifier(hook.url + "/{take}", SECRET).notify(REF, "completed", {"srt": "a"}, None)
    (got,) = hook.got
    _, timestamp, signature = headers_of(got)
    assert verify(SECRET.encode(), got.body, timestamp, signature)
    tampered = got.body.replace(b"completed", b"failed")
    assert not verify(SECRET.encode(), tampered, timestamp, signature)
    assert not verify(b"another secret", got.body, timestamp, signature)
    old = str(int(time.time()) - 301)  # a recorded request, signed again would need the key
    assert not verify(SECRET.encode(), got.body, old, sign(got.body, old, SECRET))
    assert not verify(SECRET.encode(), got.body, "soon", signature)


@pytest.mark.parametrize(
    "url",
    [
        "http://host/hook/{meeting}/{take}",  # the issue's: an unknown name
        "http://host/hook/{take",  # a literal brace
        "http://host/hook/{{take}}",
        "http://host/hook/{0}",
        "http://host/hook/{take!r}",
        "ftp://host/{take}",
        "http:///{take}",
        "host/{take}",
    ],
)
def test_a_webhook_url_that_cannot_be_filled_in_stops_start_up(url: str) -> None:
    with pytest.raises(SettingsError) as e:
        load_settings(source="local", webhook_url=url, webhook_secret="s")
    (line,) = e.value.problems
    assert line.startswith("WEBHOOK_URL: ")


def test_a_webhook_url_of_the_take_s_ids_is_accepted() -> None:
    url = "https://hooks.example.com/w/{meeting_id}/{take}/{user_id}?k=1"
    assert load_settings(source="local", webhook_url=url, webhook_secret="s").webhook_url == url


def read_status(bucket: str) -> dict[str, Any]:
    body = s3().get_object(Bucket=bucket, Key=KEYS.status_key(REF))["Body"].read()
    return dict(json.loads(body))


def bad_marker_take(bucket: str) -> None:
    client: Any = s3()
    client.put_object(Bucket=bucket, Key=KEYS.take_prefix(REF) + "video_0.webm", Body=b"x")
    client.put_object(
        Bucket=bucket, Key=KEYS.marker_key(REF), Body=b'{"skip_transcription": "false"}'
    )


async def test_the_failed_status_exists_before_the_failed_notice(
    bucket: str, tmp_path: Path
) -> None:
    bad_marker_take(bucket)
    with Receiver(on_request=lambda _: read_status(bucket)) as hook:
        job = take_job(s3_storage(bucket), "a", tmp_path)
        job.notifier = Notifier(hook.url + "/{meeting_id}", SECRET)
        outcome = await job.run(REF)
        await job.storage.close()
    assert outcome.state == "failed"
    (got,) = hook.got
    assert json.loads(got.body)["status"] == "failed"
    assert got.seen["state"] == "failed" and got.seen["webhook"] == {"state": "sending"}
    final = read_status(bucket)
    assert final["state"] == "failed" and final["error"]["kind"] == "bad_marker"
    assert final["webhook"]["state"] == "delivered"
    assert final["webhook"]["delivery"] == got.headers["X-Whisp-Delivery"]


async def test_the_done_status_is_there_when_completed_is_sent(bucket: str, tmp_path: Path) -> None:
    make_take(tmp_path / "take", duration=0.5, chunks=1, audio=None)
    for path in sorted((tmp_path / "take").iterdir()):
        s3().put_object(
            Bucket=bucket, Key=KEYS.take_prefix(REF) + path.name, Body=path.read_bytes()
        )
    s3().put_object(Bucket=bucket, Key=KEYS.marker_key(REF), Body=b'{"skip_transcription": true}')
    with Receiver(on_request=lambda _: read_status(bucket)) as hook:
        job = take_job(s3_storage(bucket), "a", tmp_path)
        job.notifier = Notifier(hook.url + "/{user_id}", SECRET)
        try:
            outcome = await job.run(REF)
        finally:
            job.workers.close()
            await job.storage.close()
    assert outcome.state == "done"
    (got,) = hook.got
    assert got.seen["state"] == "done" and json.loads(got.body)["status"] == "completed"
    assert json.loads(got.body)["outputs"]["video"] == got.seen["outputs"]["video"]["key"]
    assert read_status(bucket)["webhook"]["state"] == "delivered"


async def test_a_webhook_that_cannot_be_sent_never_fails_the_take(
    bucket: str, tmp_path: Path
) -> None:
    """Even a template the settings would refuse (a bug past them): the take is final."""
    bad_marker_take(bucket)
    job = take_job(s3_storage(bucket), "a", tmp_path)
    job.notifier = Notifier("http://127.0.0.1:9/{meeting}", SECRET, attempts=1)
    outcome = await job.run(REF)
    await job.storage.close()
    assert outcome.state == "failed"
    final = read_status(bucket)
    assert final["state"] == "failed" and final["error"]["kind"] == "bad_marker"
    assert final["webhook"]["state"] == "failed"
    assert final["webhook"]["error"] == "KeyError: 'meeting'"
