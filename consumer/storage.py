"""The object store: S3-compatible (R2, AWS, MinIO) through aiobotocore, or a local folder.

Both speak the same small interface, with the conditional writes the lease needs:
``put_bytes(..., if_none_match=True)`` creates only if absent and ``if_match=etag``
replaces only that version; a failed condition raises ``PreconditionFailed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".wav": "audio/wav",
    ".srt": "application/x-subrip",
    ".vtt": "text/vtt; charset=utf-8",
    ".json": "application/json",
}
MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024


class StorageError(Exception):
    """The store failed (network, 5xx, throttling): worth trying again."""


class PreconditionFailed(StorageError):
    """A conditional write found the object changed (HTTP 412)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    modified: float = 0.0

    @property
    def name(self) -> str:
        """The last part of the key: ``video_0.webm`` of ``recordings/m/t/u/video_0.webm``."""
        return self.key.rsplit("/", 1)[-1]


def content_type(path: Path | str) -> str:
    return CONTENT_TYPES.get(Path(path).suffix, "application/octet-stream")


class Storage(Protocol):
    async def list_objects(self, prefix: str) -> list[ObjectInfo]: ...
    async def get_bytes(
        self, key: str, max_bytes: int | None = None
    ) -> tuple[bytes, str] | None: ...
    async def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/json",
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> str: ...
    async def delete(self, key: str) -> None: ...
    async def download(self, key: str, path: Path) -> None: ...
    async def upload(self, path: Path, key: str, content_type: str) -> None: ...
    async def close(self) -> None: ...


async def get_json(storage: Storage, key: str, max_bytes: int = 1 << 20) -> dict[str, Any] | None:
    """A JSON object from the store; None when it is absent or not a JSON object."""
    found = await storage.get_bytes(key, max_bytes=max_bytes)
    if found is None:
        return None
    try:
        value = json.loads(found[0])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _etag(value: str) -> str:
    return value.strip('"')


class S3Storage:
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
                raise ValueError(f"{key} is over {max_bytes} bytes")
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
        s3 = await self._s3()
        async with self._errors(key):
            response = await s3.get_object(Bucket=self.bucket, Key=key)
            with path.open("wb") as f:
                async with response["Body"] as body:
                    async for chunk in body.iter_chunks(1024 * 1024):
                        f.write(chunk)

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
            upload = await s3.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )
            upload_id = upload["UploadId"]
            try:
                parts = []
                with path.open("rb") as f:
                    number = 1
                    while data := f.read(PART_SIZE):
                        part = await s3.upload_part(
                            Bucket=self.bucket,
                            Key=key,
                            UploadId=upload_id,
                            PartNumber=number,
                            Body=data,
                        )
                        parts.append({"ETag": part["ETag"], "PartNumber": number})
                        number += 1
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


class LocalStorage:
    """A folder laid out like the bucket. ETags are MD5s of the content, as S3's are."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"key {key!r} is outside the folder")
        return path

    async def close(self) -> None:
        return None

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        return await asyncio.to_thread(self.list_objects_now, prefix)

    def list_objects_now(self, prefix: str) -> list[ObjectInfo]:
        base = self._path(prefix.rsplit("/", 1)[0]) if "/" in prefix else self.root
        found: list[ObjectInfo] = []
        if not base.is_dir():
            return found
        for dirpath, _, files in os.walk(base):
            for name in files:
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix) and not name.startswith(".tmp-"):
                    stat = path.stat()
                    tag = f"{stat.st_mtime_ns:x}-{stat.st_size:x}"
                    found.append(ObjectInfo(key, stat.st_size, tag, stat.st_mtime))
        return sorted(found, key=lambda o: o.key)

    async def get_bytes(self, key: str, max_bytes: int | None = None) -> tuple[bytes, str] | None:
        path = self._path(key)
        try:
            if max_bytes is not None and path.stat().st_size > max_bytes:
                raise ValueError(f"{key} is over {max_bytes} bytes")
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return data, hashlib.md5(data, usedforsecurity=False).hexdigest()

    async def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/json",
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked(path):
            if if_none_match and path.exists():
                raise PreconditionFailed(f"{key}: exists")
            if if_match is not None:
                current = await self.get_bytes(key)
                if current is None or current[1] != if_match:
                    raise PreconditionFailed(f"{key}: changed")
            self._write(path, data)
        return hashlib.md5(data, usedforsecurity=False).hexdigest()

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Any:
        """Compare-and-swap under an flock, so consumers on one machine agree."""
        locks = self.root / ".whisp-locks"
        locks.mkdir(exist_ok=True)
        name = hashlib.sha256(str(path).encode()).hexdigest()[:32]
        with (locks / name).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
        tmp.write_bytes(data)
        tmp.replace(path)

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    async def download(self, key: str, path: Path) -> None:
        await asyncio.to_thread(shutil.copyfile, self._path(key), path)

    async def upload(self, path: Path, key: str, content_type: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
        await asyncio.to_thread(shutil.copyfile, path, tmp)
        tmp.replace(target)
