"""The object store on a real S3 server (moto) and on a folder."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from pathlib import Path

import pytest

from consumer.errors import InvalidKey, PreconditionFailed, StorageError, disk_full
from consumer.storage import Storage
from consumer.storage.local import LocalStorage
from tests.support.s3 import s3, s3_storage
from tests.support.s3proxy import Outage, S3Proxy


async def test_conditional_put_creates_once_and_replaces_only_its_version(storage: Storage) -> None:
    etag = await storage.put_bytes("a/lock", b"one", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        await storage.put_bytes("a/lock", b"two", if_none_match=True)
    new = await storage.put_bytes("a/lock", b"three", if_match=etag)
    with pytest.raises(PreconditionFailed):
        await storage.put_bytes("a/lock", b"four", if_match=etag)
    got = await storage.get_bytes("a/lock")
    assert got == (b"three", new)
    await storage.close()


async def test_listing_uses_a_trailing_slash_and_paginates(storage: Storage) -> None:
    """user_1/ does not match user_10/; more than 1,000 keys come back."""
    await asyncio.gather(*(storage.put_bytes(f"r/m/t/user_1/c{i}", b"x") for i in range(1005)))
    await storage.put_bytes("r/m/t/user_10/c0", b"x")
    found = await storage.list_objects("r/m/t/user_1/")
    assert len(found) == 1005 and all(o.key.startswith("r/m/t/user_1/") for o in found)
    await storage.close()


async def test_upload_sets_content_type(bucket: str, tmp_path: Path) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(b"\0" * 100)
    storage = s3_storage(bucket)
    await storage.upload(path, "out/x.mp4", "video/mp4")
    head = s3().head_object(Bucket=bucket, Key="out/x.mp4")
    assert head["ContentType"] == "video/mp4" and head["ContentLength"] == 100
    await storage.close()


async def test_large_upload_is_multipart_and_whole(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import consumer.storage.s3 as module

    monkeypatch.setattr(module, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(module, "PART_SIZE", 5 * 1024 * 1024)
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB: three parts
    path = tmp_path / "big.mp4"
    path.write_bytes(data)
    storage = s3_storage(bucket)
    await storage.upload(path, "out/big.mp4", "video/mp4")
    got = s3().get_object(Bucket=bucket, Key="out/big.mp4")
    assert got["Body"].read() == data and "-3" in got["ETag"]
    await storage.close()


async def test_local_storage_never_leaves_its_folder(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "bucket")
    with pytest.raises(InvalidKey, match="outside"):
        await storage.put_bytes("../escape", b"x")
    assert not (tmp_path / "escape").exists()


async def test_a_large_upload_sends_its_parts_side_by_side(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight parts that each take a second to be answered go up in about two seconds,
    four at a time, not in eight: a large MP4 is not sent part after part."""
    import consumer.storage.s3 as module

    monkeypatch.setattr(module, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(module, "PART_SIZE", 5 * 1024 * 1024)
    data = bytes(range(256)) * (20 * 8 * 1024)  # 40 MiB: eight parts
    path = tmp_path / "big.mp4"
    path.write_bytes(data)

    def a_part(method: str, path: str, headers: dict[str, str]) -> bool:
        return method == "PUT" and path.endswith("/out/big.mp4")  # ?partNumber=...

    with S3Proxy(os.environ["WHISP_TEST_S3"], slow=a_part, delay=1.0) as proxy:
        storage = s3_storage(bucket, endpoint=proxy.url)
        started = time.monotonic()
        await storage.upload(path, "out/big.mp4", "video/mp4")
        elapsed = time.monotonic() - started
        await storage.close()
    assert len(proxy.requests("PUT", "/out/big.mp4")) == 8
    assert elapsed < 5.0, elapsed
    assert s3().get_object(Bucket=bucket, Key="out/big.mp4")["Body"].read() == data


async def test_a_full_local_disk_in_a_download_is_not_the_stores_error(storage: Storage) -> None:
    """A chunk written into a full WORK_DIR fails with the OS's own error (/dev/full: ENOSPC
    on every write): this machine's fault, which the take job retries as a full disk. It
    was a ``StorageError`` "key: OSError", the bucket's fault, for the S3 store."""
    await storage.put_bytes("r/m/t/u/video_0.webm", b"\x1a\x45\xdf\xa3" * 50_000)
    with pytest.raises(OSError, match="No space left on device") as raised:
        await storage.download("r/m/t/u/video_0.webm", Path("/dev/full"))
    assert not isinstance(raised.value, StorageError)
    assert raised.value.errno == errno.ENOSPC and disk_full(raised.value)
    await storage.close()


async def test_a_write_the_local_store_refuses_is_a_storage_error(tmp_path: Path) -> None:
    """The local store's own failed writes (here: a key below an object) are the store's
    ``StorageError``, named by key, never WORK_DIR's full disk nor this machine's path."""
    storage = LocalStorage(tmp_path / "bucket")
    await storage.put_bytes("r/m/t/u", b"an object where a folder would be")
    output = tmp_path / "final_video_u.mp4"
    output.write_bytes(b"\0" * 100)
    with pytest.raises(StorageError, match=r"^r/m/t/u/final_video_u\.mp4: ") as raised:
        await storage.upload(output, "r/m/t/u/final_video_u.mp4", "video/mp4")
    assert str(tmp_path) not in str(raised.value)
    with pytest.raises(StorageError, match=r"^r/m/t/u/status_u\.json: "):
        await storage.put_bytes("r/m/t/u/status_u.json", b"{}")


async def test_a_multipart_upload_cut_by_an_outage_leaves_no_unfinished_upload(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bucket goes away inside a multipart upload (real HTTP, moto behind the fault
    proxy): the upload fails, and so does its abort, leaving an unfinished upload that
    the store keeps (and bills) unseen. The next upload of the key, once the bucket is
    back, aborts it: the object is whole and no multipart upload is left open."""
    import consumer.storage.s3 as module

    monkeypatch.setattr(module, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(module, "PART_SIZE", 5 * 1024 * 1024)
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB: three parts
    path = tmp_path / "big.wav"
    path.write_bytes(data)
    key = "r/m/t/final_audio_u.wav"
    first_part = Outage(lambda method, p, _: method == "PUT" and p.endswith(key), mode="reset")
    client = s3()
    with S3Proxy(os.environ["WHISP_TEST_S3"], chaos=first_part) as proxy:
        storage = s3_storage(bucket, proxy.url)
        with pytest.raises(StorageError):
            await storage.upload(path, key, "audio/wav")
        assert ("DELETE", f"/{bucket}/{key}") in first_part.failed  # the abort failed too
        assert len(client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
        first_part.end()
        await storage.upload(path, key, "audio/wav")
        await storage.close()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    got = client.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == data and "-3" in got["ETag"]
