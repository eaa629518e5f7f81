"""The samples Whisper hears are the ones its engines would read from the take themselves."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.chunks import plan_take
from pipeline.encode import encode_take
from pipeline.transcribe import read_samples
from tests.support.speech import SPEECH_TAKE, engine_reads
from tests.support.takes import make_take


def speech_samples(take: Path, work: Path) -> np.ndarray:
    encoded = encode_take(plan_take(take), work)
    assert encoded.speech_path is not None
    return read_samples(encoded.speech_path)


def test_the_long_take_gives_exactly_the_samples_faster_whisper_decodes(tmp_path: Path) -> None:
    """Chromium's loud Opus overshoots full scale: float samples kept it, the engines clip."""
    ours = speech_samples(SPEECH_TAKE, tmp_path)
    theirs = engine_reads(SPEECH_TAKE)
    assert len(ours) == len(theirs)
    assert np.array_equal(ours, theirs)
    assert np.abs(ours).max() <= 1.0


def stereo_take(folder: Path, left: float, right: float, seconds: float = 2.0) -> None:
    """A take whose audio recorder wrote stereo Opus: a 440 Hz tone, its own level each side."""
    make_take(folder, duration=seconds, audio=None, chunks=1)
    n = np.arange(int(seconds * 48_000))
    tone = np.sin(2 * np.pi * 440 * n / 48_000).astype(np.float32)
    with av.open(str(folder / "audio_0.webm"), "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=48_000)
        stream.layout = "stereo"
        for i in range(0, len(tone), 960):
            piece = tone[i : i + 960]
            frame = av.AudioFrame.from_ndarray(
                np.stack([left * piece, right * piece]), format="fltp", layout="stereo"
            )
            frame.sample_rate = 48_000
            frame.pts = i
            frame.time_base = Fraction(1, 48_000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.mark.parametrize(("left", "right"), [(0.4, 0.4), (0.6, 0.0)])
def test_a_stereo_take_is_downmixed_as_the_engines_do_it(
    tmp_path: Path, left: float, right: float
) -> None:
    """Half of left plus right, as in s16: a float downmix is 0.707 of each, 3 dB louder."""
    stereo_take(tmp_path / "take", left, right)
    ours = speech_samples(tmp_path / "take", tmp_path / "work")
    assert np.array_equal(ours, engine_reads(tmp_path / "take"))
    middle = ours[8_000:-8_000]  # away from the encoder's fade in and out
    level = np.sqrt(2 * np.mean(middle**2))  # the tone's amplitude
    assert level == pytest.approx((left + right) / 2, rel=0.05)
