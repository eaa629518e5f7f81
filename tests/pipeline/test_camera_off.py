"""A take with the camera off: audio chunks only, made into every output but the picture."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.errors import NoMedia
from pipeline.process import TakeOptions, process_take
from tests.support.mediaprobe import duration, streams, subtitles
from tests.support.takes import header_only, make_take


def test_audio_only_take_gets_audio_captions_and_an_mp4_without_video(
    fixture_take: Path, tmp_path: Path
) -> None:
    """The Chromium take's audio recorder alone (real speech): done, with the WAV, the
    captions and an MP4 of the AAC audio and the mov_text track."""
    take = tmp_path / "in"
    take.mkdir()
    for chunk in fixture_take.glob("audio_*.webm"):
        shutil.copyfile(chunk, take / chunk.name)
    result = process_take(take, tmp_path / "out", tmp_path / "w", TakeOptions("u1"))
    assert result.video is None
    assert result.captions.startswith("embedded:") and result.cues > 0
    assert set(result.outputs) == {"video", "audio", "srt", "vtt", "transcript"}
    mp4 = result.outputs["video"]
    info = streams(mp4)
    assert set(info) == {"audio", "subtitle"}
    assert info["audio"].codec == "aac" and info["subtitle"].codec == "mov_text"
    assert duration(mp4) == pytest.approx(15.0, abs=0.1)
    assert any("release" in text for _, _, text in subtitles(mp4))
    assert duration(result.outputs["audio"]) == pytest.approx(15.0, abs=0.1)


def test_av_chunks_recorded_without_a_camera_are_an_audio_take(tmp_path: Path) -> None:
    """One recorder, audio only (``av_`` chunks with no video stream)."""
    make_take(tmp_path / "in", duration=1.5, layout="av", video_codec=None)
    options = TakeOptions("u1", transcribe=False)
    result = process_take(tmp_path / "in", tmp_path / "out", tmp_path / "w", options)
    assert result.video is None and result.audio
    assert set(streams(result.outputs["video"])) == {"audio"}
    assert duration(result.outputs["audio"]) == pytest.approx(1.5, abs=0.05)


def test_take_whose_only_chunks_are_debris_is_a_clear_failure(tmp_path: Path) -> None:
    """Neither video nor audio to make anything from: a permanent failure that says so."""
    make_take(tmp_path / "in", duration=1.0, layout="restarted", chunks=2, video_codec=None)
    for chunk in (tmp_path / "in").iterdir():
        chunk.write_bytes(header_only(chunk.read_bytes()))
    with pytest.raises(NoMedia, match="hold no frames"):
        process_take(tmp_path / "in", tmp_path / "out", tmp_path / "w", TakeOptions("u1"))
