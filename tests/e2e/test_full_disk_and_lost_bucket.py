"""``whisp run`` when the machine or the bucket gives way (issue 11, "disk full in the
work folder and a bucket that dies mid-upload: retried, nothing half-written reported
``done``"): real subprocesses, a real file-size limit, the bucket behind the fault proxy.

- A full WORK_DIR: the service runs under ``RLIMIT_FSIZE`` (writes past it fail with
  EFBIG, as on a full disk; CPython ignores SIGXFSZ). One take's chunk is over the limit
  (its download fails, in the service), another's outputs are (the encode fails, in the
  worker). Both wait ``processing`` with ``last_error`` ``disk_full``; the limit is
  lifted on the running processes, and the sweep makes each take once.
- A bucket gone mid-upload: every request fails from the second output's upload on, for
  some seconds. The status never says ``done`` while an output is missing; once the
  bucket is back, the lease and the sweep make the take, every output whole.
"""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path
from typing import Any

import pytest

from consumer.keys import KeyLayout, TakeRef
from consumer.take import NO_ROOM
from tests.support.cfqueue import QueueEmulator
from tests.support.harness import (
    QUEUE,
    Whisp,
    env_for,
    locks,
    put_marker,
    status,
    upload,
    uploads,
    versioned,
    wait_for,
    whisp,
)
from tests.support.mediaprobe import duration
from tests.support.paths import FIXTURE
from tests.support.s3 import s3
from tests.support.s3proxy import Outage, S3Proxy
from tests.support.takes import make_take

pytestmark = pytest.mark.slow
KEYS = KeyLayout()
# Above the service's log while limited (a file it writes itself: about 10 KB) and the
# Chromium take's chunks (up to 134 KB); below its outputs (a 1.4 MB WAV) and its video
# stream in one chunk (733 KB). The first write past it fails with EFBIG.
FILE_SIZE_LIMIT = 384 * 1024


def record(bucket: str, ref: TakeRef) -> dict[str, Any]:
    return status(bucket, KEYS.status_key(ref)) or {}


def outputs_in_bucket(bucket: str, ref: TakeRef) -> list[str]:
    made = set(KEYS.output_keys(ref, "wav").values())
    listed = s3().list_objects_v2(Bucket=bucket).get("Contents", [])
    return [o["Key"] for o in listed if o["Key"] in made]


def limited_file_size() -> None:
    """In the ``whisp run`` child, before it starts: the soft limit only, so that the
    test (the same user) can lift it again on the running processes."""
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, hard))


def lift_file_size_limit(w: Whisp) -> None:
    """Space is back: the limit goes on the service first (the workers it starts later
    inherit its limit), then on its running workers."""
    for pid in sorted(w.processes(), key=lambda pid: pid != w.proc.pid):
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))


def chunk_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.webm"))


def joined_take(folder: Path) -> Path:
    """The Chromium take's streams, each in one chunk (733 and 242 KB): a split stream
    cut in one piece is the same stream."""
    folder.mkdir()
    for kind in ("video", "audio"):
        pieces = sorted(FIXTURE.glob(f"{kind}_*.webm"), key=lambda p: int(p.stem.split("_")[1]))
        (folder / f"{kind}_0.webm").write_bytes(b"".join(p.read_bytes() for p in pieces))
    return folder


def test_a_full_work_folder_is_retried_and_the_take_made_once_space_is_back(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    emulator.create_queue(QUEUE, max_retries=5)
    in_worker = TakeRef("full", "1", "encode")  # chunks fit; the WAV and MP4 do not
    in_download = TakeRef("full", "1", "download")  # its video chunk does not fit
    refs = [in_worker, in_download]
    upload(versioned(bucket), FIXTURE, KEYS.take_prefix(in_worker), chunk_names(FIXTURE))
    whole = joined_take(tmp_path / "whole")
    upload(bucket, whole, KEYS.take_prefix(in_download), chunk_names(whole))
    work = tmp_path / "work"
    env = env_for(
        emulator,
        bucket,
        work,
        CONCURRENCY=2,
        VIDEO_PRESET="ultrafast",
        SWEEP_INTERVAL_SECONDS=1,
        RETRY_DELAY_SECONDS=3,
    )

    def refused(ref: TakeRef) -> bool:
        found = record(bucket, ref)
        kind = found.get("last_error", {}).get("kind")
        return found.get("stage") == "retrying" and kind == "disk_full"

    with whisp(env, tmp_path / "run.log", preexec=limited_file_size) as w:
        wait_for(lambda: w.owner, 30, "whisp up")
        for ref in refs:
            put_marker(bucket, KEYS.take_prefix(ref), {"skip_transcription": True}, emulator)
        wait_for(lambda: all(refused(ref) for ref in refs), 60, "both attempts out of room")
        for ref in refs:
            seen = record(bucket, ref)
            assert seen["state"] == "processing", ref
            assert seen["last_error"]["message"] == "no room to write in WORK_DIR: File too large"
            assert seen["next_try_at"] > seen["last_error"]["at"]
            assert str(tmp_path) not in json.dumps(seen)  # no local path
        assert outputs_in_bucket(bucket, in_worker) == []  # nothing partial went up
        assert w.proc.poll() is None  # a passing fault, no crash
        # Both ways in: the download (this process), the encode (a worker process).
        where = {line["user_id"]: line["during"] for line in w.events(NO_ROOM)}
        assert where == {"download": "downloading", "encode": "processing"}
        assert all(line["level"] == "error" for line in w.events(NO_ROOM))
        assert (tmp_path / "run.log").stat().st_size < FILE_SIZE_LIMIT  # the log was whole
        lift_file_size_limit(w)
        wait_for(
            lambda: all(record(bucket, ref).get("state") == "done" for ref in refs),
            90,
            "both takes made once space is back",
        )
        wait_for(lambda: not locks(bucket), 20, "every lock released")
        assert w.stop() == 0
    assert not w.events("take failed") and not w.events("unexpected error; will retry")
    for ref in refs:
        done = record(bucket, ref)
        assert done["attempts"] >= 2 and done["last_error"]["kind"] == "disk_full"
        assert len([e for e in w.events("take done") if e["user_id"] == ref.user_id]) == 1
        assert sorted(done["outputs"]) == ["audio", "video"]
        for role, made in done["outputs"].items():
            head = s3().head_object(Bucket=bucket, Key=made["key"])
            assert head["ContentLength"] == made["size"], role
            assert uploads(bucket, made["key"]) == 1, role  # once, whole: nothing partial
        video = tmp_path / f"{ref.user_id}.mp4"
        video.write_bytes(
            s3().get_object(Bucket=bucket, Key=done["outputs"]["video"]["key"])["Body"].read()
        )
        assert abs(duration(video) - done["duration"]) < 0.1 and done["duration"] > 14
    # The refused attempts' partial files were removed at once: they held the room.
    assert list(work.iterdir()) == []


# Longer than the lease (4 s): the first attempt ends by a lost lease, if its failed
# upload has not ended it first.
OUTAGE_SECONDS = 6.0


def test_a_bucket_gone_mid_upload_never_shows_a_partial_take_done(
    emulator: QueueEmulator, bucket: str, tmp_path: Path
) -> None:
    emulator.create_queue(QUEUE, max_retries=5)
    ref = TakeRef("outage", "1", "u")
    spec = make_take(tmp_path / "take", duration=3.0, chunks=2)
    upload(versioned(bucket), tmp_path / "take", KEYS.take_prefix(ref))
    keys = KEYS.output_keys(ref, "wav")
    # The video goes up first, then the audio: the bucket goes away as the audio begins.
    outage = Outage(
        lambda method, path, _: method == "PUT" and path.endswith("/" + keys["audio"]),
        seconds=OUTAGE_SECONDS,
    )
    with S3Proxy(os.environ["WHISP_TEST_S3"], chaos=outage) as proxy:
        env = env_for(
            emulator,
            bucket,
            tmp_path / "work",
            S3_ENDPOINT_URL=proxy.url,
            LEASE_SECONDS=4,
            SWEEP_INTERVAL_SECONDS=1,
        )
        with whisp(env, tmp_path / "run.log") as w:
            wait_for(lambda: w.owner, 30, "whisp up")
            put_marker(bucket, KEYS.take_prefix(ref), {"skip_transcription": True}, emulator)
            wait_for(lambda: outage.began, 60, "the bucket gone as the audio goes up")
            # Read past the proxy, as a client of the bucket would meanwhile.
            during = record(bucket, ref)
            assert (during["state"], during["stage"]) == ("processing", "uploading")
            assert outputs_in_bucket(bucket, ref) == [keys["video"]]  # the audio is missing
            wait_for(lambda: outage.over, 30, "the bucket back")
            wait_for(lambda: record(bucket, ref).get("state") == "done", 60, "made after it")
            wait_for(lambda: not locks(bucket), 20, "the lock released")
            assert w.stop() == 0
    assert outage.failed[0] == ("PUT", f"/{bucket}/{keys['audio']}")
    assert len(outage.failed) > 4  # retries, renewals, the sweep's listings
    done = record(bucket, ref)
    assert done["attempts"] == 2 and len(w.events("take done")) == 1
    for role, made in done["outputs"].items():
        head = s3().head_object(Bucket=bucket, Key=made["key"])
        assert head["ContentLength"] == made["size"], role
    video = tmp_path / "final.mp4"
    video.write_bytes(s3().get_object(Bucket=bucket, Key=keys["video"])["Body"].read())
    assert abs(duration(video) - spec.duration) < 0.1
    # Of every version the status record had, only the last says done.
    client: Any = s3()
    versions = client.list_object_versions(Bucket=bucket, Prefix=KEYS.status_key(ref))
    states = {
        v["VersionId"]: json.loads(
            client.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
        )["state"]
        for v in versions["Versions"]
    }
    latest = next(v["VersionId"] for v in versions["Versions"] if v["IsLatest"])
    assert list(states.values()).count("done") == 1 and states[latest] == "done", states
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    ended = [e for e in ("lease lost", "attempt not recorded") if w.events(e)]
    print("outage: failed", len(outage.failed), "requests; attempt 1:", ended)
