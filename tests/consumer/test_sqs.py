"""The SQS source against moto's SQS server: what a delete that fails says."""

from __future__ import annotations

import itertools
import json

import structlog
from prometheus_client import REGISTRY

from consumer.sources import Message
from tests.support.sqs import sqs, sqs_queue

_queues = itertools.count(1)


def new_queue() -> str:
    return str(sqs().create_queue(QueueName=f"whisp-events-{next(_queues)}")["QueueUrl"])


def settle_failures(source: str) -> float:
    return REGISTRY.get_sample_value("whisp_settle_failures_total", {"source": source}) or 0.0


async def test_a_delete_the_queue_refuses_is_logged_with_its_reason_and_counted(
    moto_url: str,
) -> None:
    url = new_queue()
    body = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "a"}}}]}
    sqs().send_message(QueueUrl=url, MessageBody=json.dumps(body))
    queue = sqs_queue(url)
    [message] = await queue.receive(10)
    stale = Message(id="stale-1", events=[], handle="not-a-receipt-handle")
    before = settle_failures("sqs")
    with structlog.testing.capture_logs() as logs:
        await queue.ack([message, stale])
    await queue.close()
    (failed,) = [e for e in logs if e["event"] == "queue did not delete a message"]
    assert failed["message_id"] == "stale-1" and failed["code"] == "ReceiptHandleIsInvalid"
    assert failed["reason"]
    assert settle_failures("sqs") == before + 1
