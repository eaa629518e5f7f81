"""The speech-3min take: what was said and when, and how a transcript of it is scored.

Word error rates are taken after Whisper's English text normalizer (from openai-whisper),
so "20%" and "twenty percent" or "off-site" and "off site" count as the same words.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np

from tests.support.paths import ROOT

SPEECH_TAKE = ROOT / "tests" / "fixtures" / "speech-3min"


@dataclass(frozen=True)
class Spoken:
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Sentence:
    text: str
    start: float
    end: float
    words: tuple[Spoken, ...]


def script(take: Path = SPEECH_TAKE) -> list[Sentence]:
    """The take's sentences with when each word is spoken, from its ``script.json``."""
    body = json.loads((take / "script.json").read_text())
    return [
        Sentence(s["text"], s["start"], s["end"], tuple(Spoken(*w) for w in s["words"]))
        for s in body["sentences"]
    ]


def audio_chunks(take: Path) -> list[Path]:
    return sorted(take.glob("audio_*.webm"), key=lambda p: int(p.stem.split("_")[1]))


def engine_reads(take: Path) -> np.ndarray:
    """faster-whisper's own reading of the take's audio: its chunks joined, decode_audio."""
    from faster_whisper import decode_audio

    joined = b"".join(p.read_bytes() for p in audio_chunks(take))
    samples: np.ndarray = decode_audio(io.BytesIO(joined))
    return samples


@functools.cache
def _normalizer() -> object:
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalized(text: str) -> list[str]:
    """Whisper's English normalization, as words."""
    result: str = _normalizer()(text)  # type: ignore[operator]
    return result.split()


@dataclass(frozen=True)
class Score:
    """A transcript against the script."""

    wer: float
    heard: list[float]  # per sentence, the share of its words in the transcript

    def missing(self, sentences: Sequence[Sentence], share: float = 0.5) -> list[str]:
        """The sentences of which less than ``share`` of the words were heard."""
        return [s.text for s, h in zip(sentences, self.heard, strict=True) if h < share]


def score(sentences: Sequence[Sentence], transcript: str) -> Score:
    """Word error rate over the whole script, and how much of each sentence was heard
    (its words aligned to equal words of the transcript)."""
    reference: list[str] = []
    owner: list[int] = []
    for i, sentence in enumerate(sentences):
        words = normalized(sentence.text)
        reference += words
        owner += [i] * len(words)
    out = jiwer.process_words(" ".join(reference), " ".join(normalized(transcript)) or "-")
    hits = [0] * len(sentences)
    for chunk in out.alignments[0]:
        if chunk.type == "equal":
            for k in range(chunk.ref_start_idx, chunk.ref_end_idx):
                hits[owner[k]] += 1
    sizes = [owner.count(i) for i in range(len(sentences))]
    return Score(float(out.wer), [h / n for h, n in zip(hits, sizes, strict=True)])


def _plain(word: str) -> str:
    return re.sub(r"[^a-z0-9]", "", word.lower())


@dataclass(frozen=True)
class CueTiming:
    """A caption and when its first and last words (those found in the script) are spoken."""

    start: float
    end: float
    text: str
    first: Spoken | None  # the script's word for the cue's first word, if it was heard right
    last: Spoken | None


def cue_timings(
    sentences: Sequence[Sentence], cues: Sequence[tuple[float, float, str]]
) -> list[CueTiming]:
    """Each cue with the script's words for its first and last words, aligned over the
    whole take (lowercase letters and digits compared)."""
    spoken = [w for s in sentences for w in s.words if _plain(w.word)]
    heard: list[tuple[int, str]] = []  # (cue, word)
    for k, (_, _, text) in enumerate(cues):
        heard += [(k, _plain(w)) for w in text.split() if _plain(w)]
    out = jiwer.process_words(
        " ".join(_plain(w.word) for w in spoken), " ".join(w for _, w in heard)
    )
    match: dict[int, Spoken] = {}
    for chunk in out.alignments[0]:
        if chunk.type == "equal":
            for offset in range(chunk.hyp_end_idx - chunk.hyp_start_idx):
                match[chunk.hyp_start_idx + offset] = spoken[chunk.ref_start_idx + offset]
    timings = []
    for k, (start, end, text) in enumerate(cues):
        mine = [i for i, (cue, _) in enumerate(heard) if cue == k]
        first = match.get(mine[0]) if mine else None
        last = match.get(mine[-1]) if mine else None
        timings.append(CueTiming(start, end, text, first, last))
    return timings
