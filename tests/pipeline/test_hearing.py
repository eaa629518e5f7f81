"""Hearing a take while its first pass writes it (issue 13): the regions, and the thread.

A take is heard a region at a time, each ended at a pause; the regions depend only on the
samples, so a take heard while it is written, however the writing is paced, gets exactly
the transcript of the finished file heard at once (tiny.en, the 3-minute speech take:
two regions).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import transcribe, voice
from pipeline.errors import TranscriptionError
from pipeline.hearing import Hearing
from pipeline.transcribe import Engine
from pipeline.voice import CHUNK_GAP, split_at
from tests.support.speech import SPEECH_TAKE, engine_reads


def test_a_region_ends_in_its_last_long_pause_in_its_second_half() -> None:
    spans = [(1.0, 50.0), (53.0, 80.0), (83.0, 100.0), (100.5, 119.0)]
    assert split_at(spans, 120.0) == 81.5


def test_without_a_long_pause_a_region_ends_in_its_longest_pause_in_its_second_half() -> None:
    spans = [(1.0, 20.0), (25.0, 70.0), (70.4, 90.0), (91.0, 119.8)]
    assert split_at(spans, 120.0) == 90.5  # the 5 s pause is in the first half


def test_the_silence_after_the_last_voice_is_a_pause() -> None:
    assert split_at([(1.0, 100.0)], 120.0) == 110.0
    assert split_at([], 120.0) == 120.0  # no voice: the whole region
    assert split_at([(0.0, 120.0)], 120.0) == 120.0  # a voice that never pauses


def test_a_long_pause_wins_over_a_longer_earlier_one() -> None:
    spans = [(1.0, 60.0), (70.0, 100.0), (100.0 + CHUNK_GAP, 118.0)]
    assert split_at(spans, 120.0) == 119.0  # the trailing 2 s pause, the last long one


@pytest.fixture(scope="module")
def engine() -> Engine:
    return transcribe.load_engine("faster-whisper", "tiny.en", threads=2)


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    heard = engine_reads(SPEECH_TAKE)
    assert len(heard) > voice.REGION * voice.SAMPLE_RATE  # more than one region
    return heard


def write_paced(path: Path, samples: np.ndarray, hearing: Hearing, seed: int) -> None:
    """Write ``samples`` to ``path`` in pieces of random sizes, telling ``hearing``."""
    rng = random.Random(seed)
    written = 0
    with path.open("wb") as f:
        while written < len(samples):
            piece = samples[written : written + rng.randint(1, 40) * 1600]
            f.write(piece.tobytes())
            f.flush()
            written += len(piece)
            hearing.grew(written)
            if rng.random() < 0.05:
                time.sleep(0.05)
    hearing.end(written)


def test_a_take_heard_while_it_is_written_is_heard_as_the_finished_file(
    engine: Engine, samples: np.ndarray, tmp_path: Path
) -> None:
    at_once = engine.transcribe(samples, "en")
    path = tmp_path / "speech.f32"
    hearing = Hearing(path, lambda: engine, "en")
    write_paced(path, samples, hearing, seed=7)
    heard = hearing.result()
    assert heard == at_once
    assert heard.duration == len(samples) / voice.SAMPLE_RATE
    starts = [s.start for s in heard.segments]
    # Both regions were heard, the second one's words in the take's time.
    assert starts == sorted(starts) and starts[0] < 10 and starts[-1] > voice.REGION


def test_a_model_that_cannot_be_loaded_is_an_error_of_the_result(tmp_path: Path) -> None:
    def missing() -> Engine:
        raise TranscriptionError("Whisper model 'nope' not found")

    hearing = Hearing(tmp_path / "speech.f32", missing, None)
    hearing.end(0)
    with pytest.raises(TranscriptionError, match="nope"):
        hearing.result()


def test_a_stopped_hearing_ends_its_thread(engine: Engine, tmp_path: Path) -> None:
    hearing = Hearing(tmp_path / "speech.f32", lambda: engine, "en")
    hearing.grew(16_000)  # less than a region: it waits for more
    hearing.stop()
    threads = [t for t in threading.enumerate() if t.name == "whisp-hearing"]
    for thread in threads:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in threads)


def test_an_empty_take_is_heard_as_silence(engine: Engine, tmp_path: Path) -> None:
    hearing = Hearing(tmp_path / "speech.f32", lambda: engine, "en")
    hearing.end(0)  # the file was never written
    heard = hearing.result()
    assert heard.segments == [] and heard.duration == 0.0
