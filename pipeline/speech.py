"""The samples Whisper hears: 16 kHz mono float32, made as the engines make them themselves.

faster-whisper's ``decode_audio`` resamples to *signed 16-bit* mono at 16 kHz with PyAV
and divides by 32768; openai-whisper's ``load_audio`` asks the FFmpeg CLI for the same
(``-ac 1 -ar 16000 -f s16le``). Resampling straight to float instead gives other samples,
and Whisper's result hangs on such differences (issue 15: a mono take lost 11 words
instead of 1 for a largest sample difference of 0.018):

- libswresample normalises its downmix matrix only for integer output: a stereo take
  comes out as 0.5 (L + R) in s16 but 0.707 (L + R) in float, about 3 dB louder;
- float keeps what is above full scale (an Opus decoder overshoots loud speech, and
  browsers' gain control drives speech there), s16 clips it, as a WAV file does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

SPEECH_RATE = 16_000


class SpeechWriter:
    """Writes the take's decoded audio frames to a file as Whisper's raw float32 samples.

    Feed it the frames in take order (any rate, format and layout); ``close`` flushes the
    resampler and the file. ``pipeline.transcribe.read_samples`` reads the file back;
    ``written`` is told each time samples reach the file (``pipeline.hearing`` reads them
    as they come).
    """

    def __init__(self, path: Path, written: Callable[[int], None] | None = None) -> None:
        self.path = path
        self._written = written
        self._told = 0
        self._file = path.open("wb")
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SPEECH_RATE)
        self.samples = 0

    def write(self, frame: av.AudioFrame | None) -> None:
        """Add a frame (``None`` flushes the resampler)."""
        for out in self._resampler.resample(frame):
            samples = out.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
            self._file.write(samples.tobytes())
            self.samples += len(samples)
        # Told about once a second of samples, and at the end.
        due = frame is None or self.samples >= self._told + SPEECH_RATE
        if self._written is not None and due:
            self._file.flush()
            self._told = self.samples
            self._written(self.samples)

    def close(self) -> None:
        self.write(None)
        self._file.close()

    def abort(self) -> None:
        self._file.close()
