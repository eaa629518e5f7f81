"""What the engines hear, and how their words are put back: the one way both Whisper
engines (``pipeline.transcribe``) cut a take's speech, so silence gets no invented
captions and every passage is heard whole.

0. The take is heard a region at a time (``hear``): ``REGION`` seconds of it, ended in the
   middle of a pause in the region's second half (``split_at``), the next region starting
   there. The regions depend only on the samples, so a take heard while its first pass is
   still writing it (``pipeline.hearing``) is heard exactly as the same samples heard at
   once; each region's decoding is prompted with the text heard before it, as the engines
   prompt each window with the one before.
1. Silero VAD (shipped inside faster-whisper) finds where a voice is (``speech_spans``).
2. The spans are grouped into chunks (``speech_chunks``): a pause of ``CHUNK_GAP`` or
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
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

SAMPLE_RATE = 16_000


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


# Step 0: regions.
REGION = 120.0  # s of the take heard at once, at most
PROMPT_SEGMENTS = 8  # the segments heard last, whose text prompts the next region

# Decodes joined speech by its windows (see step 3), in the language given (detected when
# None), prompted with the text heard before it: the segments found, and the language.
Decode = Callable[[np.ndarray, list[float], str | None, str | None], tuple[list[Segment], str]]
# The take's samples from an offset (in samples): ``REGION`` seconds of them, or all that
# is left, with True, once the take has no more.
Fetch = Callable[[int], tuple[np.ndarray, bool]]


def whole(samples: np.ndarray) -> Fetch:
    """The fetch of samples known at once."""
    size = round(REGION * SAMPLE_RATE)
    return lambda start: (samples[start : start + size], start + size >= len(samples))


def split_at(spans: list[Span], length: float) -> float:
    """Where a region of ``length`` seconds, with a voice at ``spans``, ends: in the
    middle of its last pause of ``CHUNK_GAP`` or more in its second half (the silence
    after its last span counts: the voice can only come back after the region), else of
    the longest pause there, else at its end (a voice that never paused)."""
    if not spans:
        return length
    pauses = [(a[1], b[0]) for a, b in pairwise(spans)]
    pauses.append((spans[-1][1], length))
    later = [p for p in pauses if p[0] + p[1] >= length]  # its middle in the second half
    long = [p for p in later if p[1] - p[0] >= CHUNK_GAP]
    if long:
        return (long[-1][0] + long[-1][1]) / 2
    if later:
        a, b = max(later, key=lambda p: p[1] - p[0])
        return (a + b) / 2
    return length


def _shifted(segment: Segment, offset: float) -> Segment:
    words = tuple(
        Word(round(w.start + offset, 3), round(w.end + offset, 3), w.word, w.probability)
        for w in segment.words
    )
    return Segment(
        round(segment.start + offset, 3), round(segment.end + offset, 3), segment.text, words
    )


def hear(engine: str, model: str, decode: Decode, fetch: Fetch, language: str | None) -> Transcript:
    """The take's transcript, heard a region at a time (step 0) through steps 1 to 4."""
    segments: list[Segment] = []
    prompt: str | None = None
    start = 0
    while True:
        samples, last = fetch(start)
        length = len(samples) / SAMPLE_RATE
        spans = speech_spans(samples) if len(samples) else []
        end = length if last else split_at(spans, length)
        chunks = speech_chunks([(a, min(b, end)) for a, b in spans if a < end], end)
        if chunks:
            joined = join_speech(samples, chunks)
            found, language = decode(joined.samples, joined.windows, language, prompt)
            offset = start / SAMPLE_RATE
            segments += [_shifted(s, offset) for s in restore_words(found, chunks, joined)]
            if found:
                prompt = " ".join(s.text.strip() for s in found[-PROMPT_SEGMENTS:])
        if last:
            duration = (start + len(samples)) / SAMPLE_RATE
            return Transcript(language or "en", engine, model, duration, segments)
        start += round(end * SAMPLE_RATE)
