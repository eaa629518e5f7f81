"""Finding, ordering and classifying a take's chunks."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from pipeline.chunks import (
    Join,
    missing_chunks,
    missing_ranges,
    parse_chunk_name,
    plan_take,
)
from pipeline.errors import BadChunks, ChunkRange, LimitExceeded, MissingChunks, NoMedia
from tests.support.takes import make_take


def test_chunk_names_parse_with_padding_and_reject_others() -> None:
    """Zero-padded indices parse as integers; other names are not chunks."""
    assert parse_chunk_name("video_007.webm") == ("video", 7)
    assert parse_chunk_name("av_12.mkv") == ("av", 12)
    assert parse_chunk_name("audio_3.mp4") == ("audio", 3)
    for name in (
        "video_1.webm.bak",
        "video_.webm",
        "done.json",
        "../video_1.webm",
        "video_-1.webm",
        "video_\u0663.webm",  # ARABIC-INDIC DIGIT THREE: a digit, not an ASCII one
        "audio_\uff11.webm",  # FULLWIDTH DIGIT ONE
        "video_1.webm\n",  # ``$`` matches before a final newline
        "video_1000000000.webm",  # past nine digits of value
    ):
        assert parse_chunk_name(name) is None, repr(name)
    assert parse_chunk_name("video_" + "0" * 20 + "12.webm") == ("video", 12)  # any padding


def test_chunks_are_ordered_by_integer_not_text(fixture_take: Path, tmp_path: Path) -> None:
    """video_10 comes after video_9, not after video_1."""
    for i in range(12):
        (tmp_path / f"video_{i}.webm").write_bytes(b"x")
    shutil.copyfile(fixture_take / "video_0.webm", tmp_path / "video_0.webm")
    plan = plan_take(tmp_path)
    assert plan.video is not None
    assert [c.index for c in plan.video.chunks] == list(range(12))


def test_fixture_is_a_split_stream(fixture_take: Path) -> None:
    """Chromium's timeslice chunks: only chunk 0 has a header, so the layout is split."""
    plan = plan_take(fixture_take)
    assert plan.video is not None and plan.audio is not None
    assert plan.video.join is Join.SPLIT
    assert plan.audio.join is Join.SPLIT
    assert len(plan.video.chunks) == 8


def test_restarted_recordings_are_detected(tmp_path: Path) -> None:
    """A recorder restarted per chunk gives a header in every chunk."""
    make_take(tmp_path, layout="restarted", chunks=3, duration=1.5)
    plan = plan_take(tmp_path)
    assert plan.video is not None and plan.video.join is Join.RESTARTED


def test_missing_middle_chunk_is_reported(tmp_path: Path) -> None:
    """A hole in the indices names the missing chunk."""
    make_take(tmp_path, chunks=4, duration=1.0)
    (tmp_path / "video_2.webm").unlink()
    with pytest.raises(MissingChunks) as err:
        plan_take(tmp_path)
    assert err.value.missing == {"video": (ChunkRange(2, 2),)}
    assert str(err.value) == "missing chunks: video 2"
    assert err.value.retryable


def test_missing_chunk_zero_is_reported_not_a_parse_error(tmp_path: Path) -> None:
    """Without chunk 0 the take is missing its header chunk, said as such."""
    make_take(tmp_path, chunks=3, duration=1.0)
    (tmp_path / "video_0.webm").unlink()
    with pytest.raises(MissingChunks, match="video 0"):
        plan_take(tmp_path)


def test_expected_counts_find_missing_tail(tmp_path: Path) -> None:
    """With counts from the marker, chunks not yet uploaded at the end are missing."""
    make_take(tmp_path, chunks=3, duration=1.0)
    with pytest.raises(MissingChunks, match=r"video 3, 4; audio 3"):
        plan_take(tmp_path, expected_video=5, expected_audio=4)


def test_numbering_may_start_at_one(tmp_path: Path) -> None:
    """Chunks numbered from 1 are complete."""
    make_take(tmp_path, chunks=3, duration=1.0, first_index=1)
    assert missing_ranges([1, 2, 3], 3) == []
    plan = plan_take(tmp_path, expected_video=3)
    assert plan.video is not None and plan.video.chunks[0].index == 1


def test_missing_chunks_by_name_lists_the_video_kind_first() -> None:
    """Holes and marker counts give the missing indices per kind, av before audio."""
    assert missing_chunks({"audio": [0, 2], "av": [0, 1]}, 4, None) == {
        "av": [ChunkRange(2, 3)],
        "audio": [ChunkRange(1, 1)],
    }
    assert missing_chunks({"video": [0], "audio": [0]}, None, 2) == {"audio": [ChunkRange(1, 1)]}
    assert missing_chunks({"video": [0, 1]}, 2, None) == {}


def test_zero_byte_later_chunk_is_skipped_with_a_warning(tmp_path: Path) -> None:
    """An empty blob (MediaRecorder sends them) is skipped, and the plan says so."""
    make_take(tmp_path, chunks=3, duration=1.0)
    (tmp_path / "audio_3.webm").write_bytes(b"")
    plan = plan_take(tmp_path)
    assert any("audio_3.webm is empty" in w for w in plan.warnings)
    assert plan.audio is not None and len(plan.audio.chunks) == 3


def test_empty_first_chunk_is_a_clear_error(tmp_path: Path) -> None:
    make_take(tmp_path, chunks=2, duration=1.0)
    (tmp_path / "video_0.webm").write_bytes(b"")
    with pytest.raises(BadChunks, match=r"first video chunk video_0\.webm is empty"):
        plan_take(tmp_path)


def test_first_chunk_that_is_not_media_is_refused(tmp_path: Path) -> None:
    make_take(tmp_path, chunks=2, duration=1.0)
    (tmp_path / "video_0.webm").write_bytes(b"<html>not a video</html>")
    with pytest.raises(BadChunks, match="not media"):
        plan_take(tmp_path)


def test_kind_mixing_split_and_restarted_is_refused(tmp_path: Path) -> None:
    """A header in some later chunks but not others is neither layout."""
    make_take(tmp_path, chunks=3, duration=1.0)
    shutil.copyfile(tmp_path / "video_0.webm", tmp_path / "video_2.webm")
    with pytest.raises(BadChunks, match="mix"):
        plan_take(tmp_path)


def test_take_without_video_is_planned_from_its_audio(tmp_path: Path) -> None:
    """The camera off: audio chunks only."""
    make_take(tmp_path, video_codec=None, chunks=2, duration=1.0)
    plan = plan_take(tmp_path)
    assert plan.video is None and plan.audio is not None and len(plan.audio.chunks) == 2


def test_take_with_neither_video_nor_audio_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no chunks here")
    with pytest.raises(NoMedia, match="no video or audio chunks"):
        plan_take(tmp_path)


def test_av_mixed_with_separate_tracks_is_refused(tmp_path: Path) -> None:
    make_take(tmp_path, chunks=2, duration=1.0)
    shutil.copyfile(tmp_path / "video_0.webm", tmp_path / "av_0.webm")
    with pytest.raises(BadChunks, match="av_"):
        plan_take(tmp_path)


def test_total_bytes_limit_is_checked_before_work(tmp_path: Path) -> None:
    make_take(tmp_path, chunks=2, duration=1.0)
    with pytest.raises(LimitExceeded, match="over the limit"):
        plan_take(tmp_path, max_total_bytes=1000)


def test_missing_chunks_are_runs_worked_out_from_the_chunks_present() -> None:
    """Holes between the indices present and up to the expected count, as runs."""
    assert missing_ranges([0, 1, 2, 5, 6, 9], None) == [ChunkRange(3, 4), ChunkRange(7, 8)]
    assert missing_ranges([1, 2, 5], 7) == [ChunkRange(3, 4), ChunkRange(6, 7)]
    assert missing_ranges([], 3) == [ChunkRange(0, 2)]


def test_a_huge_index_or_count_gives_a_short_error(tmp_path: Path) -> None:
    """A chunk named video_10000000 or a marker promising a million chunks: a few runs,
    a short message, a small picklable error, never a list of every missing index."""
    make_take(tmp_path, chunks=2, duration=1.0)
    shutil.copyfile(tmp_path / "video_1.webm", tmp_path / "video_10000000.webm")
    with pytest.raises(MissingChunks) as err:
        plan_take(tmp_path, expected_audio=1_000_000)
    message = "missing chunks: video 2-9999999; audio 2-999999"
    assert str(err.value) == message
    again = pickle.loads(pickle.dumps(err.value))
    assert str(again) == message and again.missing == err.value.missing


def test_many_holes_are_capped_in_the_message() -> None:
    """Every other chunk missing: the first runs, then how many chunks more."""
    present = {"video": list(range(0, 40, 2))}
    error = MissingChunks(missing_chunks(present, 40, None))
    assert str(error) == "missing chunks: video 1, 3, 5, 7, 9 and 15 more"
    assert len(error.missing["video"]) == MissingChunks.MAX_RANGES
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.more == {"video": 15}


def test_counts_and_indices_past_the_limit_are_refused(tmp_path: Path) -> None:
    """Bounded by the longest take's chunks: a permanent error, not a wait."""
    with pytest.raises(LimitExceeded, match="expects 1000000 video chunks, over the limit"):
        missing_chunks({"video": [0, 1]}, 1_000_000, None, max_chunks=3600)
    with pytest.raises(LimitExceeded, match="video_10000000 is numbered past the limit"):
        missing_chunks({"video": [0, 10_000_000]}, None, None, max_chunks=3600)
    assert missing_chunks({"video": [1, 2, 3600]}, 3600, None, max_chunks=3600) == {
        "video": [ChunkRange(3, 3599)]
    }
    make_take(tmp_path, chunks=2, duration=1.0)
    shutil.copyfile(tmp_path / "video_1.webm", tmp_path / "video_10000000.webm")
    with pytest.raises(LimitExceeded):
        plan_take(tmp_path, max_chunks=3600)


def test_errors_about_many_chunks_name_a_few(tmp_path: Path) -> None:
    """Seen while fuzzing: the mixing error named every later chunk with a header, and
    the duplicate error every doubled index; a take of 500 chunks made a line of
    kilobytes for the status record. Both name three, then count the rest."""
    header = b"\x1a\x45\xdf\xa3" + bytes(8)
    for n in range(500):
        (tmp_path / f"video_{n}.webm").write_bytes(header if n != 250 else b"cluster")
    with pytest.raises(BadChunks) as err:
        plan_take(tmp_path)
    assert str(err.value) == (
        "video chunks mix a split stream with restarted recordings (video_1.webm, "
        "video_2.webm, video_3.webm and 495 more start with a header, video_250.webm do not)"
    )
    for n in range(500):
        (tmp_path / f"video_0{n}.webm").write_bytes(header)
    with pytest.raises(BadChunks, match=r"same index \(0, 1, 2 and 497 more\)$"):
        plan_take(tmp_path)
