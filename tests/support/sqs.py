"""moto's SQS on the test server (the same ThreadedMotoServer as S3), as AWS's would be."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3

from consumer.sources.sqs import SqsQueue
from tests.support.harness import env_for


def sqs() -> Any:
    """A boto3 client of the test server's SQS."""
    return boto3.client(
        "sqs",
        endpoint_url=os.environ["WHISP_TEST_S3"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def sqs_queue(queue_url: str, wait_seconds: int = 0) -> SqsQueue:
    """whisp's own SQS source on that queue."""
    return SqsQueue(
        queue_url=queue_url,
        endpoint_url=os.environ["WHISP_TEST_S3"],
        access_key="testing",
        secret_key="testing",
        wait_seconds=wait_seconds,
    )


def visible(queue_url: str) -> int:
    """How many messages the queue would hand out now."""
    attributes = sqs().get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def sqs_env(bucket: str, queue_url: str, work: Path, **extra: object) -> dict[str, str]:
    """``whisp run``'s environment for the S3 -> SQS path on the test server."""
    url = os.environ["WHISP_TEST_S3"]
    env = env_for(None, bucket, work, SOURCE="sqs", SQS_QUEUE_URL=queue_url, SQS_ENDPOINT_URL=url)
    for name in ("CF_QUEUE_ID", "CF_API_TOKEN"):
        env.pop(name, None)
    env.update({k: str(v) for k, v in extra.items()})
    return env
