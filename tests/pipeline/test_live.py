"""A take followed while it is recorded (``pipeline.live``) is the take made whole.

The chunks are copied into the follower's folder one by one by a thread, as the consumer
downloads them while a browser uploads, and the end of the take is said with
``write_final``; what ``follow_take`` makes is compared with ``process_take`` on the same
chunks, file by file.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.chunks import parse_chunk_name
from pipeline.errors import CorruptMedia
from pipeline.live import LiveTake, follow_take, write_final
from pipeline.options import MediaOptions
from pipeline.process import TakeOptions, TakeResult, process_take
from tests.support.takes import add_header_only_chunk, make_resized_take, make_take

OPTIONS = TakeOptions(user_id="u", media=MediaOptions(preset="ultrafast"), threads=1)


def in_upload_order(folder: Path) -> list[Path]:
    """The take's chunks as a browser uploads them: by index, every kind's n-th together."""
    chunks = [p for p in folder.iterdir() if parse_chunk_name(p.name)]
    return sorted(chunks, key=lambda p: (parse_chunk_name(p.name) or ("", 0))[::-1])


@contextmanager
def recorded(
    source: Path, work: Path, options: TakeOptions, pace: float, chunks: list[Path] | None = None
) -> Iterator[threading.Thread]:
    """A thread that lands ``source``'s chunks in ``work/chunks`` every ``pace`` seconds,
    each whole (by a rename, as the consumer does), then says the take has ended."""
    folder = work / "chunks"
    folder.mkdir(parents=True)

    def upload() -> None:
        for path in chunks if chunks is not None else in_upload_order(source):
            part = folder / f".{path.name}.part"
            shutil.copyfile(path, part)
            part.replace(folder / path.name)
            time.sleep(pace)
        write_final(folder, options)

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        thread.join(30)


def follow(source: Path, tmp_path: Path, pace: float = 0.05, **kw: object) -> TakeResult:
    with recorded(source, tmp_path / "follow", OPTIONS, pace, **kw):  # type: ignore[arg-type]
        return follow_take(tmp_path / "follow", tmp_path / "follow-out", OPTIONS)


def assert_same_outputs(followed: TakeResult, whole: TakeResult) -> None:
    assert followed.outputs.keys() == whole.outputs.keys()
    for role, path in whole.outputs.items():
        assert followed.outputs[role].read_bytes() == path.read_bytes() or role == "transcript", (
            role
        )
    assert followed.duration == whole.duration
    assert followed.video == whole.video
    assert followed.captions == whole.captions and followed.warnings == whole.warnings


def test_a_followed_take_is_the_take_made_whole(fixture_take: Path, tmp_path: Path) -> None:
    """The real Chromium take (one stream cut mid-cluster, speech), chunk by chunk: the
    same MP4, WAV, SRT and VTT, byte for byte, as the whole-take path makes."""
    whole = process_take(fixture_take, tmp_path / "whole-out", tmp_path / "whole", OPTIONS)
    followed = follow(fixture_take, tmp_path)
    assert whole.cues > 0 and "video" in whole.outputs and "audio" in whole.outputs
    assert_same_outputs(followed, whole)
    assert not (tmp_path / "follow" / "whole").exists()  # it was followed, not made whole
    assert followed.timings["heard"] > 0  # heard while it was followed


def test_a_marker_asking_for_another_language_is_heard_again_as_it_asks(
    fixture_take: Path, tmp_path: Path
) -> None:
    """Followed with the service's options (language detected), ended by a marker that
    says "en": the speech written while following is heard again with the marker's options."""
    asked = dataclasses.replace(OPTIONS, language="en")
    with recorded(fixture_take, tmp_path / "follow", asked, 0.05):
        followed = follow_take(tmp_path / "follow", tmp_path / "follow-out", OPTIONS)
    whole = process_take(fixture_take, tmp_path / "whole-out", tmp_path / "whole", asked)
    assert followed.followed and "heard" not in followed.timings
    assert_same_outputs(followed, whole)


def test_a_restarted_take_skips_its_header_only_last_chunk_as_the_whole_path_does(
    tmp_path: Path,
) -> None:
    spec = make_take(tmp_path / "take", duration=4.0, chunks=5, layout="restarted")
    add_header_only_chunk(spec, "video")
    whole = process_take(spec.folder, tmp_path / "whole-out", tmp_path / "whole", OPTIONS)
    followed = follow(spec.folder, tmp_path)
    assert any("header only" in w for w in whole.warnings)
    assert_same_outputs(followed, whole)
    assert not (tmp_path / "follow" / "whole").exists()


def test_an_h264_take_is_copied_while_followed(tmp_path: Path) -> None:
    """Chromium's H.264 recording, split: copied as it lands, checked at its end."""
    spec = make_take(tmp_path / "take", duration=4.0, chunks=4, video_codec="h264")
    whole = process_take(spec.folder, tmp_path / "whole-out", tmp_path / "whole", OPTIONS)
    followed = follow(spec.folder, tmp_path)
    assert whole.video is not None and whole.video["copied"]
    assert_same_outputs(followed, whole)
    assert not (tmp_path / "follow" / "whole").exists()


def test_an_h264_take_that_changes_size_is_made_whole(tmp_path: Path) -> None:
    """Copied unchecked while followed, its size change is found at its end: the take is
    made whole, which encodes it (a copy would keep the first size's header)."""
    spec = make_resized_take(tmp_path / "take", video_codec="h264")
    whole = process_take(spec.folder, tmp_path / "whole-out", tmp_path / "whole", OPTIONS)
    followed = follow(spec.folder, tmp_path)
    assert whole.video is not None and not whole.video["copied"]
    assert_same_outputs(followed, whole)
    assert (tmp_path / "follow" / "whole").exists()


def test_a_take_that_changes_shape_after_following_began_is_made_whole(tmp_path: Path) -> None:
    """Audio chunks that land only after the video was followed alone: the followed plan is
    not the finished take's, so the take is made whole, and made right."""
    spec = make_take(tmp_path / "take", duration=4.0, chunks=4)
    order = sorted(spec.folder.glob("video_*")) + sorted(spec.folder.glob("audio_*"))
    whole = process_take(spec.folder, tmp_path / "whole-out", tmp_path / "whole", OPTIONS)
    followed = follow(spec.folder, tmp_path, pace=0.3, chunks=order)
    assert whole.audio and followed.audio
    assert_same_outputs(followed, whole)
    assert (tmp_path / "follow" / "whole").exists()  # made whole


def test_a_take_ended_before_it_could_be_followed_is_made_whole(tmp_path: Path) -> None:
    spec = make_take(tmp_path / "take", duration=2.0, chunks=2)
    whole = process_take(spec.folder, tmp_path / "whole-out", tmp_path / "whole", OPTIONS)
    followed = follow(spec.folder, tmp_path, pace=0.0)
    assert_same_outputs(followed, whole)


def test_a_damaged_chunk_fails_the_followed_take_as_it_fails_the_whole_one(
    tmp_path: Path,
) -> None:
    spec = make_take(tmp_path / "take", duration=4.0, chunks=4, layout="restarted")
    # A header and a cluster that cannot be read: media lost, not a header-only chunk.
    (spec.folder / "video_2.webm").write_bytes(b"\x1a\x45\xdf\xa3" + b"\x1f\x43\xb6\x75" * 800)
    with pytest.raises(CorruptMedia) as whole:
        process_take(spec.folder, tmp_path / "whole-out", tmp_path / "whole", OPTIONS)
    with pytest.raises(CorruptMedia) as followed:
        follow(spec.folder, tmp_path)
    assert str(followed.value) == str(whole.value)


def test_a_followed_take_is_given_up_when_asked(tmp_path: Path) -> None:
    """``check`` raising while the follower waits for a chunk ends the follow at once."""
    spec = make_take(tmp_path / "take", duration=2.0, chunks=3)
    (tmp_path / "f" / "chunks").mkdir(parents=True)
    for path in in_upload_order(spec.folder)[:4]:
        shutil.copyfile(path, tmp_path / "f" / "chunks" / path.name)
    stop = threading.Event()

    class Stopped(Exception):
        pass

    def check() -> None:
        if stop.is_set():
            raise Stopped

    threading.Timer(1.0, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Stopped):
        follow_take(tmp_path / "f", tmp_path / "out", OPTIONS, check=check)
    assert time.monotonic() - started < 5


def test_the_live_plan_waits_for_every_kind_to_show_its_join(tmp_path: Path) -> None:
    spec = make_take(tmp_path / "take", duration=3.0, chunks=3)
    folder = tmp_path / "chunks"
    folder.mkdir()
    live = LiveTake(folder, poll=0.01)
    for name in ("video_0.webm", "audio_0.webm", "video_1.webm", "video_2.webm"):
        shutil.copyfile(spec.folder / name, folder / name)
    timer = threading.Timer(
        0.3, shutil.copyfile, (spec.folder / "audio_1.webm", folder / "audio_1.webm")
    )
    timer.start()
    plan = live.plan()
    assert plan is not None and plan.video is not None and plan.audio is not None
    assert (folder / "audio_1.webm").exists()  # it waited for the audio's second chunk
