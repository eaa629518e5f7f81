"""A take heard while its first pass is still writing it (issue 13).

The first pass writes Whisper's samples to ``speech.f32`` as it decodes the audio
(``pipeline.speech``). A ``Hearing`` transcribes them in a thread of its own as they
grow: every time a region's worth has been written (``pipeline.voice``, step 0), it is
decoded while the encoder goes on with the video. When the first pass ends, only the
last region is left. Encoding and transcription then share the cores instead of taking
turns: the whole-take path overlaps them, and a take followed while it is recorded has
heard all but its last minutes when it ends.

The regions depend only on the samples, so a take is heard the same however the writing
and the hearing are paced: as ``Engine.transcribe`` hears the finished file. The thread
reads the file a region at a time, so memory stays one region whatever the take's length.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.transcribe import Engine
from pipeline.voice import REGION, SAMPLE_RATE, Transcript, hear

SAMPLE_BYTES = 4  # float32


class _Stopped(Exception):
    """The hearing was stopped: nothing is left to hear."""


class Hearing:
    """Transcribes the samples written to ``path`` as they grow (see the module).

    Tell it the samples written so far (``grew``), then their final count (``end``), and
    take the transcript (``result``); or ``stop`` it. ``engine`` is loaded in the thread,
    so a model that cannot be loaded is an error of ``result`` only: a take without audio
    never asks."""

    def __init__(self, path: Path, engine: Callable[[], Engine], language: str | None) -> None:
        self._path = path
        self._engine = engine
        self._language = language
        self._changed = threading.Condition()
        self._written = 0
        self._ended = False
        self._stopped = False
        self._result: Transcript | None = None
        self._error: BaseException | None = None
        self._waited = 0.0
        self.busy = 0.0  # seconds the thread spent loading and hearing, not waiting
        self._thread = threading.Thread(target=self._run, name="whisp-hearing", daemon=True)
        self._thread.start()

    def grew(self, samples: int) -> None:
        """``samples`` are written and flushed to the file."""
        with self._changed:
            self._written = samples
            self._changed.notify()

    def end(self, samples: int) -> None:
        """The file is complete, with ``samples``."""
        with self._changed:
            self._written = samples
            self._ended = True
            self._changed.notify()

    def result(self) -> Transcript:
        """The transcript of the whole file, once ``end`` has been told (waits for it)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None, "result() before end()"
        return self._result

    def stop(self) -> None:
        """Hear no more: the thread ends once the region it decodes now is done."""
        with self._changed:
            self._stopped = True
            self._changed.notify()

    def _fetch(self, start: int) -> tuple[np.ndarray, bool]:
        size = round(REGION * SAMPLE_RATE)
        with self._changed:
            waiting = time.monotonic()
            # More than a region written, or the end: with exactly a region and no end
            # yet, whether it is the last one is not known.
            while not (self._stopped or self._ended or self._written > start + size):
                self._changed.wait()
            self._waited += time.monotonic() - waiting
            if self._stopped:
                raise _Stopped
            count = min(size, self._written - start)
            last = self._ended and self._written <= start + size
        if count == 0:
            return np.zeros(0, np.float32), last
        return np.fromfile(self._path, np.float32, count, offset=start * SAMPLE_BYTES), last

    def _run(self) -> None:
        started = time.monotonic()
        try:
            engine = self._engine()
            language = self._language
            self._result = hear(engine.name, engine.model, engine.decode, self._fetch, language)
        except _Stopped:
            pass
        except BaseException as e:  # handed to result()'s caller
            self._error = e
        self.busy = round(time.monotonic() - started - self._waited, 3)
