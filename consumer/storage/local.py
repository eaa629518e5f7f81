"""A local folder laid out like the bucket: the embedded default, with no account.

ETags are MD5s of the content, as S3's are for single-part uploads; listings tag each
object with its modification time and size instead (reading every chunk to hash it would
cost more than the listing). Conditional writes are a compare-and-swap under an ``flock``,
so consumers on one machine agree. A write the folder refuses (a full disk) is the store's
``StorageError``, as a bucket's would be: the take job tells it from a full WORK_DIR.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from consumer.errors import InvalidKey, ObjectTooLarge, PreconditionFailed, StorageError
from consumer.storage.base import ObjectInfo, Storage


class LocalStorage(Storage):
    """A folder laid out like the bucket. ETags are MD5s of the content, as S3's are."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidKey(f"key {key!r} is outside the folder")
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
                raise ObjectTooLarge(key, max_bytes)
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
        with self._refused(key):
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

    @staticmethod
    @contextlib.contextmanager
    def _refused(key: str) -> Iterator[None]:
        """A write of the folder's that fails is the store's failure (``StorageError``),
        named by key: never this machine's path, never taken for WORK_DIR's."""
        try:
            yield
        except OSError as e:
            raise StorageError(f"{key}: {e.strerror or type(e).__name__}") from e

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
        tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
        with self._refused(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(shutil.copyfile, path, tmp)
            tmp.replace(target)
