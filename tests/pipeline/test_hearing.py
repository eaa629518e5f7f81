"""Hearing a take while its first pass writes it (issue 13): the regions, and the thread.

A take is heard a region at a time, each ended at a pause; the regions depend only on the
samples, so a take heard while it is written, however the writing is paced, gets exactly
the transcript of the finished file heard at once (tiny.en, the 3-minute speech take:
two regions). What they are given to decode is the same to the byte; what the model makes
of it is the same within its own nondeterminism (CTranslate2 on a CPU may give another
float, and so now and then another timestamp or word, from one call to the next).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from pathlib import Path

import jiwer
import numpy as np
import pytest

from pipeline import transcribe, voice
from pipeline.errors import TranscriptionError
from pipeline.hearing import Hearing
from pipeline.transcribe import Engine
from pipeline.voice import CHUNK_GAP, Segment, Transcript, split_at
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


class Listening:
    """An engine that notes what it is given to decode (one entry per region), and decodes
    it with ``engine``, or not at all (None: no words, the regions only)."""

    def __init__(self, engine: Engine | None) -> None:
        self.engine = engine
        self.name, self.model = "faster-whisper", "tiny.en"
        self.given: list[tuple[str, tuple[float, ...]]] = []

    def transcribe(self, samples: np.ndarray, language: str | None) -> Transcript:
        return voice.hear(self.name, self.model, self.decode, voice.whole(samples), language)

    def decode(
        self, joined: np.ndarray, windows: list[float], language: str | None, prompt: str | None
    ) -> tuple[list[Segment], str]:
        self.given.append((hashlib.sha256(joined.tobytes()).hexdigest(), tuple(windows)))
        if self.engine is None:
            return [], language or "en"
        return self.engine.decode(joined, windows, language, prompt)


def test_a_take_heard_while_it_is_written_is_heard_as_the_finished_file(
    engine: Engine, samples: np.ndarray, tmp_path: Path
) -> None:
    at_once = Listening(engine)
    whole = at_once.transcribe(samples, "en")
    path = tmp_path / "speech.f32"
    paced = Listening(engine)
    hearing = Hearing(path, lambda: paced, "en")
    write_paced(path, samples, hearing, seed=7)
    heard = hearing.result()
    assert len(paced.given) == 2 and paced.given == at_once.given  # the same speech, cut alike
    assert float(jiwer.wer(whole.text, heard.text)) <= 0.02, (whole.text, heard.text)
    assert heard.duration == whole.duration == len(samples) / voice.SAMPLE_RATE
    starts = [s.start for s in heard.segments]
    # Both regions were heard, the second one's words in the take's time.
    assert starts == sorted(starts) and starts[0] < 10 and starts[-1] > voice.REGION


def test_a_region_written_to_its_last_sample_waits_to_know_if_it_is_the_last(
    samples: np.ndarray, tmp_path: Path
) -> None:
    """With exactly a region written and no end told, the region may be the take's last
    (heard whole) or not (ended at a pause): the hearing waits to know, as the finished
    file would tell."""
    take = samples[: round(voice.REGION * voice.SAMPLE_RATE)]
    at_once = Listening(None)
    at_once.transcribe(take, "en")
    path = tmp_path / "speech.f32"
    take.tofile(path)
    paced = Listening(None)
    hearing = Hearing(path, lambda: paced, "en")
    hearing.grew(len(take))
    time.sleep(1.0)  # time enough to hear a region too soon
    hearing.end(len(take))
    hearing.result()
    assert len(at_once.given) == 1 and paced.given == at_once.given


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
