"""AWS S3 -> SQS notifications with aiobotocore.

Long polling; keys URL-decoded (``+`` is a space); ``s3:TestEvent`` messages and SNS
envelopes handled; visibility extended while a take runs; deleted when settled; a retry
is the message made visible again after the delay.
"""

from __future__ import annotations

import contextlib
from typing import Any

import structlog
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from consumer import metrics, safejson
from consumer.errors import SourceUnavailable
from consumer.events import parse_s3
from consumer.sources import Message, Source

log = structlog.get_logger(__name__)

MAX_VISIBILITY = 43_200


class SqsQueue(Source):
    name = "sqs"

    def __init__(
        self,
        *,
        queue_url: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        wait_seconds: int = 20,
    ) -> None:
        self.url = queue_url
        self.wait = wait_seconds
        self._kwargs: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
        }
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def _sqs(self) -> Any:
        if self._client is None:
            self._client = await self._stack.enter_async_context(
                get_session().create_client("sqs", **self._kwargs)
            )
        return self._client

    @contextlib.asynccontextmanager
    async def _errors(self, what: str) -> Any:
        try:
            yield
        except (ClientError, BotoCoreError, OSError) as e:
            raise SourceUnavailable(f"sqs {what}: {type(e).__name__}") from None

    async def check(self) -> None:
        sqs = await self._sqs()
        async with self._errors("get_queue_attributes"):
            await sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])

    async def receive(self, max_messages: int) -> list[Message]:
        sqs = await self._sqs()
        async with self._errors("receive"):
            response = await sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=max(1, min(10, max_messages)),
                WaitTimeSeconds=self.wait,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        messages = []
        for item in response.get("Messages", []):
            try:
                body = safejson.loads(item.get("Body", ""))
            except ValueError:
                body = None
            events = parse_s3(body)
            attempts = int(item.get("Attributes", {}).get("ApproximateReceiveCount", 1))
            messages.append(
                Message(
                    id=item["MessageId"],
                    events=events,
                    attempts=attempts,
                    handle=item["ReceiptHandle"],
                    meta={"unreadable": body is None},
                )
            )
        return messages

    async def ack(self, messages: list[Message]) -> None:
        sqs = await self._sqs()
        for i in range(0, len(messages), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": m.handle}
                for n, m in enumerate(messages[i : i + 10])
            ]
            async with self._errors("delete"):
                answer = await sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
            # A batch call succeeds as a whole and reports each entry it could not delete
            # (an expired receipt handle, most often): those messages come back.
            for failed in answer.get("Failed", []):
                message = messages[i + int(failed.get("Id", 0))]
                metrics.SETTLE_FAILURES.labels(self.name).inc()
                log.warning(
                    "queue did not delete a message",
                    message_id=message.id,
                    code=failed.get("Code"),
                    reason=failed.get("Message"),
                    sender_fault=failed.get("SenderFault"),
                )

    async def retry(self, message: Message, delay: float) -> None:
        await self.extend(message, delay)

    async def extend(self, message: Message, seconds: float) -> None:
        sqs = await self._sqs()
        async with self._errors("change_message_visibility"):
            await sqs.change_message_visibility(
                QueueUrl=self.url,
                ReceiptHandle=message.handle,
                VisibilityTimeout=int(max(0, min(MAX_VISIBILITY, seconds))),
            )

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None
