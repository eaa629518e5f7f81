"""An S3-compatible bucket (R2, AWS, MinIO) through aiobotocore, with R2's client settings.

botocore 1.36 and later add checksums by default that R2 has rejected, so checksums are
computed and validated only when required. Listing is paginated; conditional writes map
HTTP 412 (and R2's 409 ``ConditionalRequestConflict``) to ``PreconditionFailed``; files
over ``MULTIPART_THRESHOLD`` go up in parts, several at once.

Every failure of the store is a ``StorageError``, the network's ``OSError``s included; a
failure of this machine's own files is not (see ``download``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from consumer.errors import ObjectTooLarge, PreconditionFailed, StorageError
from consumer.storage.base import ObjectInfo, Storage

MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024
# Parts in flight at once: a large MP4 goes up at the pace of several connections (the
# client's pool has 16), with at most this many parts read into memory.
PARALLEL_PARTS = 4
DOWNLOAD_CHUNK = 1024 * 1024


def _etag(value: str) -> str:
    return value.strip('"')


class S3Storage(Storage):
    """An S3-compatible bucket, with R2's client settings (checksums only when required)."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None,
        access_key: str | None,
        secret_key: str | None,
        region: str = "auto",
        max_connections: int = 16,
    ) -> None:
        self.bucket = bucket
        self._kwargs: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
            "region_name": None if region == "auto" and endpoint_url is None else region,
            "config": Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                max_pool_connections=max_connections,
                retries={"max_attempts": 4, "mode": "standard"},
                s3={"addressing_style": "path"} if endpoint_url else {},
            ),
        }
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._client_lock = asyncio.Lock()

    async def _s3(self) -> Any:
        async with self._client_lock:
            if self._client is None:
                session = get_session()
                self._client = await self._stack.enter_async_context(
                    session.create_client("s3", **self._kwargs)
                )
            return self._client

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    @contextlib.asynccontextmanager
    async def _errors(self, key: str) -> AsyncIterator[None]:
        try:
            yield
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (
                409,
                412,
            ):
                raise PreconditionFailed(f"{key}: {code or status}") from e
            raise StorageError(f"{key}: {code or status}") from e
        except (TimeoutError, BotoCoreError, OSError) as e:
            raise StorageError(f"{key}: {type(e).__name__}") from e

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        s3 = await self._s3()
        found = []
        async with self._errors(prefix):
            paginator = s3.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    found.append(
                        ObjectInfo(
                            item["Key"],
                            int(item["Size"]),
                            _etag(item["ETag"]),
                            item["LastModified"].timestamp(),
                        )
                    )
        return found

    async def get_bytes(self, key: str, max_bytes: int | None = None) -> tuple[bytes, str] | None:
        s3 = await self._s3()
        async with self._errors(key):
            try:
                response = await s3.get_object(Bucket=self.bucket, Key=key)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            if max_bytes is not None and int(response["ContentLength"]) > max_bytes:
                response["Body"].close()
                raise ObjectTooLarge(key, max_bytes)
            async with response["Body"] as body:
                data = await body.read()
            return data, _etag(response["ETag"])

    async def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/json",
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> str:
        s3 = await self._s3()
        extra: dict[str, str] = {}
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = f'"{if_match}"'
        async with self._errors(key):
            response = await s3.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, **extra
            )
        return _etag(response["ETag"])

    async def delete(self, key: str) -> None:
        s3 = await self._s3()
        async with self._errors(key):
            await s3.delete_object(Bucket=self.bucket, Key=key)

    async def download(self, key: str, path: Path) -> None:
        """Only reading the store is inside ``_errors``: the local file's errors (a full
        disk) are this machine's, not the store's, and leave as the ``OSError`` they are."""
        s3 = await self._s3()
        async with self._errors(key):
            response = await s3.get_object(Bucket=self.bucket, Key=key)
        async with response["Body"] as body:
            with path.open("wb") as f:
                while True:
                    async with self._errors(key):
                        data = await body.read(DOWNLOAD_CHUNK)
                    if not data:
                        return
                    f.write(data)

    async def upload(self, path: Path, key: str, content_type: str) -> None:
        s3 = await self._s3()
        size = path.stat().st_size
        async with self._errors(key):
            if size < MULTIPART_THRESHOLD:
                await s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=await asyncio.to_thread(path.read_bytes),
                    ContentType=content_type,
                )
                return
            await self._abort_unfinished(s3, key)
            upload = await s3.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )
            upload_id = upload["UploadId"]
            try:
                parts = await self._parts(s3, path, key, upload_id, size)
                await s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    await s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                raise

    async def _parts(
        self, s3: Any, path: Path, key: str, upload_id: str, size: int
    ) -> list[dict[str, Any]]:
        """Upload the file's parts, ``PARALLEL_PARTS`` at a time (each read in a thread,
        so at most that many parts are in memory); the list ``complete`` wants."""
        gate = asyncio.Semaphore(PARALLEL_PARTS)

        async def part(number: int) -> dict[str, Any]:
            async with gate:
                data = await asyncio.to_thread(_read_part, path, (number - 1) * PART_SIZE)
                sent = await s3.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                )
                return {"ETag": sent["ETag"], "PartNumber": number}

        count = max(1, -(-size // PART_SIZE))
        tasks = [asyncio.ensure_future(part(n)) for n in range(1, count + 1)]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _abort_unfinished(self, s3: Any, key: str) -> None:
        """Abort the unfinished multipart uploads of ``key`` before starting another. An
        upload's own abort fails when the bucket is gone (which is why the upload failed),
        and the store keeps its parts, unlisted and billed, until they are aborted. Only
        the lease holder uploads a take's outputs, so an unfinished upload of one is an
        earlier attempt's (or a lost owner's, which must not complete anyway). A store
        that refuses the listing leaves them to its own expiry (R2: 7 days)."""
        with contextlib.suppress(ClientError):
            found = await s3.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
            for upload in found.get("Uploads", []):
                if upload["Key"] == key:
                    await s3.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload["UploadId"]
                    )


def _read_part(path: Path, offset: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(PART_SIZE)
