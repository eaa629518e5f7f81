"""One take, start to end, on local files: chunks in, the finished outputs out.

This is what a worker process runs for the consumer, and what ``whisp process`` runs on a
local folder. It takes plain values and paths, never a bucket, a queue or settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline import captions
from pipeline.chunks import ChunkPlan, TrackSource, plan_take
from pipeline.encode import encode_take
from pipeline.errors import NoMedia
from pipeline.hearing import SAMPLE_BYTES, Hearing
from pipeline.mux import mux_final, remux_audio
from pipeline.options import MediaOptions
from pipeline.probe import without_debris
from pipeline.transcribe import Engine, EngineName, load_engine, read_samples

# Told the stage's name and the whole take's progress, from 0 to 1, never decreasing.
Stage = Callable[[str, float], None]


class TakeProgress:
    """The take's progress over its stages, each weighted by its usual share of the time
    (encoding runs at a few times real time, tiny.en transcription faster, the final
    stream copy hundreds of times), reported through ``on_stage``; never going back."""

    def __init__(self, on_stage: Stage | None, transcribe: bool) -> None:
        weights = {"plan": 0.0, "encode": 0.6, "transcribe": 0.3, "mux": 0.1}
        if not transcribe:
            weights = {"plan": 0.0, "encode": 0.9, "mux": 0.1}
        self._on_stage = on_stage
        self._spans: dict[str, tuple[float, float]] = {}
        start = 0.0
        for name, weight in weights.items():
            self._spans[name] = (start, weight)
            start += weight
        self.value = 0.0

    def __call__(self, stage: str, fraction: float = 0.0) -> None:
        """Report ``fraction`` (0 to 1) of ``stage`` done; "done" is the whole take."""
        start, weight = self._spans.get(stage, (1.0, 0.0))
        self.value = max(self.value, min(1.0, start + weight * fraction))
        if self._on_stage is not None:
            self._on_stage(stage, self.value)


@dataclass(frozen=True)
class TakeOptions:
    user_id: str
    media: MediaOptions = field(default_factory=MediaOptions)
    transcribe: bool = True
    engine: EngineName = "faster-whisper"
    model: str = "tiny.en"
    language: str | None = None
    device: str = "auto"
    compute_type: str | None = None
    threads: int = 0
    model_dir: Path | None = None
    expected_video: int | None = None
    expected_audio: int | None = None
    max_total_bytes: int | None = None
    # The most chunks of one kind a take may have: the longest take times the chunks a
    # second a client may send. Bounds marker counts and chunk numbers.
    max_chunks: int | None = None
    # Written into the JSON transcript: meeting_id and take, as the original did.
    labels: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The options as JSON values (``from_json`` reads them back)."""
        body = asdict(self)
        body["model_dir"] = str(self.model_dir) if self.model_dir is not None else None
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TakeOptions:
        model_dir = body.get("model_dir")
        return cls(
            **{
                **body,
                "media": MediaOptions(**body["media"]),
                "model_dir": Path(model_dir) if model_dir is not None else None,
            }
        )


@dataclass
class TakeResult:
    outputs: dict[str, Path]
    duration: float
    video: dict[str, Any] | None  # None for a take without video (the camera off)
    audio: bool
    captions: str
    language: str | None
    engine: str | None
    model: str | None
    cues: int
    warnings: list[str]
    timings: dict[str, float]
    # Made while it was recorded (``pipeline.live``), rather than from the whole take.
    followed: bool = False

    def summary(self) -> dict[str, Any]:
        """A JSON-ready record of the result (paths as names)."""
        body = asdict(self)
        body["outputs"] = {role: p.name for role, p in self.outputs.items()}
        return body


def output_names(user_id: str, audio_output: str) -> dict[str, str]:
    """The output file names, as the original service named them."""
    names = {
        "video": f"final_video_{user_id}.mp4",
        "srt": f"subtitle_{user_id}.srt",
        "vtt": f"subtitle_{user_id}.vtt",
        "transcript": f"transcript_{user_id}.json",
    }
    if audio_output != "none":
        names["audio"] = f"final_audio_{user_id}.{audio_output}"
    return names


def process_take(
    chunk_dir: Path,
    out_dir: Path,
    work_dir: Path,
    options: TakeOptions,
    on_stage: Stage | None = None,
) -> TakeResult:
    """Join, encode, transcribe and mux one take; returns where each output is."""
    stage = TakeProgress(on_stage, options.transcribe)
    stage("plan")
    plan = plan_take(
        chunk_dir,
        expected_video=options.expected_video,
        expected_audio=options.expected_audio,
        max_total_bytes=options.max_total_bytes,
        max_chunks=options.max_chunks,
    )
    return make_take(without_debris(plan), out_dir, work_dir, options, stage)


def _engine(options: TakeOptions) -> Engine:
    return load_engine(
        options.engine,
        options.model,
        device=options.device,
        compute_type=options.compute_type,
        threads=options.threads,
        model_dir=options.model_dir,
    )


def _hears_alike(heard: TakeOptions, options: TakeOptions) -> bool:
    """Whether a take heard with ``heard`` is heard as its own ``options`` say."""
    fields = ("engine", "model", "language", "device", "compute_type", "threads", "model_dir")
    return all(getattr(heard, f) == getattr(options, f) for f in fields)


def make_take(
    plan: ChunkPlan[TrackSource],
    out_dir: Path,
    work_dir: Path,
    options: TakeOptions,
    stage: TakeProgress,
    ended: Callable[[], TakeOptions] | None = None,
) -> TakeResult:
    """The take made from its plan: the first pass (encode), heard as it writes the
    speech (``pipeline.hearing``: transcription overlaps the encoding), then the MP4. A
    take followed while it is recorded (``pipeline.live``) starts with the options the
    service expects and learns its own, from its marker, only when its first pass has
    read its last chunk: ``ended`` gives them then."""
    if not plan.tracks:
        raise NoMedia("the take's chunks hold no frames")
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = round(now - clock, 3)
        clock = now

    media_options = MediaOptions(**{**asdict(options.media), "speech": options.transcribe})
    heard = options
    hearing = (
        Hearing(work_dir / "speech.f32", lambda: _engine(heard), heard.language)
        if heard.transcribe
        else None
    )
    try:
        stage("encode")
        encoded = encode_take(
            plan,
            work_dir,
            media_options,
            progress=lambda f: stage("encode", f),
            copy_checked=ended is None,  # a take still being recorded is checked at its end
            on_speech=hearing.grew if hearing is not None else None,
        )
        if ended is not None:
            options = ended()
    except BaseException:
        if hearing is not None:
            hearing.stop()
        raise
    lap("encode")
    out_dir.mkdir(parents=True, exist_ok=True)
    names = output_names(options.user_id, options.media.audio_output)
    outputs: dict[str, Path] = {}
    cues: list[captions.Cue] = []
    language = engine_name = model = None
    if not encoded.audio or not options.transcribe:
        if hearing is not None:
            hearing.stop()
        captions_state = "skipped: no audio" if not encoded.audio else "skipped: not requested"
    else:
        stage("transcribe")
        assert encoded.speech_path is not None
        if hearing is not None and _hears_alike(heard, options):
            hearing.end(encoded.speech_path.stat().st_size // SAMPLE_BYTES)
            transcript = hearing.result()
            timings["heard"] = hearing.busy  # hearing's own time, most of it while encoding
        else:  # the marker asked for another model or language than the one heard with
            if hearing is not None:
                hearing.stop()
            samples = read_samples(encoded.speech_path)
            transcript = _engine(options).transcribe(samples, options.language)
        language, engine_name, model = transcript.language, transcript.engine, transcript.model
        cues = captions.cues_from(transcript, encoded.duration)
        for role, text in (
            ("srt", captions.to_srt(cues)),
            ("vtt", captions.to_vtt(cues)),
            (
                "transcript",
                captions.to_json(
                    transcript,
                    **options.labels,
                    user_id=options.user_id,
                    warnings=encoded.warnings,
                    timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                ),
            ),
        ):
            outputs[role] = out_dir / names[role]
            outputs[role].write_text(text, encoding="utf-8")
        captions_state = f"embedded: {len(cues)} cues" if cues else "none: no speech found"
        lap("transcribe")
    stage("mux")
    outputs["video"] = out_dir / names["video"]
    mux_final(encoded.path, outputs["video"], cues, language)
    if encoded.audio and "audio" in names:
        outputs["audio"] = out_dir / names["audio"]
        if options.media.audio_output == "m4a":
            remux_audio(encoded.path, outputs["audio"])
        elif encoded.audio_path is not None:
            encoded.audio_path.replace(outputs["audio"])
    lap("mux")
    stage("done", 1.0)
    return TakeResult(
        outputs=outputs,
        duration=round(encoded.duration, 3),
        video=(
            # "layout" in the status record since the first release; it is the join.
            {**asdict(encoded.video), "layout": plan.video.join.value}
            if encoded.video is not None and plan.video is not None
            else None
        ),
        audio=encoded.audio,
        captions=captions_state,
        language=language,
        engine=engine_name,
        model=model,
        cues=len(cues),
        warnings=encoded.warnings,
        timings=timings,
    )
