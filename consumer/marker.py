"""The marker a client uploads when a take ends, the options its JSON body may hold, and
what they mean for the pipeline (with the service's settings) and for the chunks it needs."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from consumer import safejson
from consumer.errors import BadMarker, ObjectTooLarge
from consumer.keys import TakeRef
from consumer.settings import Settings
from consumer.storage import ObjectInfo, Storage
from pipeline.chunks import missing_chunks, parse_chunk_name
from pipeline.errors import ChunkRange
from pipeline.options import MediaOptions
from pipeline.process import TakeOptions
from pipeline.transcribe import MODEL_NAMES

MAX_MARKER_BYTES = 64 * 1024
# The most chunks a second of media can take (MediaRecorder's smallest sensible timeslice
# is 100 ms): with MAX_DURATION_SECONDS it bounds the chunk counts and indices a take may
# name, so one chunk called video_10000000.webm costs nothing to describe.
MAX_CHUNKS_PER_SECOND = 10


def chunk_limit(settings: Settings) -> int:
    """The most chunks of one kind a take within the duration limit can have."""
    return max(1, int(settings.max_duration_seconds * MAX_CHUNKS_PER_SECOND))


class MarkerOptions(BaseModel):
    """Options per take. Unknown fields are ignored; a wrong type is an error ("false" is
    not a boolean). A model is one of the named ones: a client never names a path."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    video_chunks: int | None = Field(None, ge=1, le=1_000_000)
    audio_chunks: int | None = Field(None, ge=0, le=1_000_000)
    whisper_model: str | None = None
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}$")
    skip_transcription: bool = False
    cleanup: bool = True
    # When the recorder started: RFC 3339 with an offset, or Unix milliseconds. Read as
    # Unix seconds; it aligns the participants of a meeting in its transcript.
    started_at: float | None = None

    @field_validator("started_at", mode="before")
    @classmethod
    def _instant(cls, value: object) -> float | None:
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not 0 <= value < 1e14:
                raise ValueError("Unix milliseconds out of range")
            return float(value) / 1000.0
        if isinstance(value, str):
            try:
                when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("not an RFC 3339 time") from None
            if when.tzinfo is None:
                raise ValueError("an RFC 3339 time needs its offset (Z or +hh:mm)")
            return when.timestamp()
        raise ValueError("RFC 3339 text or Unix milliseconds")

    @field_validator("whisper_model")
    @classmethod
    def _known_model(cls, value: str | None) -> str | None:
        if value is not None and value not in MODEL_NAMES:
            raise ValueError(f"unknown model; one of {', '.join(MODEL_NAMES)}")
        return value


def parse_marker(body: bytes) -> MarkerOptions:
    """Options from a marker body; an empty body means every default."""
    if len(body) > MAX_MARKER_BYTES:
        raise BadMarker(f"marker is over {MAX_MARKER_BYTES} bytes")
    if not body.strip():
        return MarkerOptions.model_validate({})
    try:
        data = safejson.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadMarker(f"marker is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadMarker("marker is not a JSON object")
    try:
        return MarkerOptions.model_validate(data)
    except ValidationError as e:
        error = e.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        raise BadMarker(f"marker field {field}: {error['msg']}") from None


def pipeline_options(settings: Settings, ref: TakeRef, marker: MarkerOptions) -> TakeOptions:
    """The pipeline's options for a take: the service's settings, overridden by its marker."""
    s = settings
    return TakeOptions(
        user_id=ref.user_id,
        media=MediaOptions(
            preset=s.video_preset,
            crf=s.video_crf,
            audio_output=s.audio_output,
            max_duration=s.max_duration_seconds,
            max_width=s.max_width,
            max_height=s.max_height,
        ),
        transcribe=not marker.skip_transcription,
        engine=s.whisper_engine,
        model=marker.whisper_model or s.whisper_model,
        language=marker.language or s.language,
        device=s.whisper_device,
        compute_type=s.whisper_compute_type,
        threads=s.whisper_threads,
        model_dir=s.whisper_model_dir,
        expected_video=marker.video_chunks,
        expected_audio=marker.audio_chunks,
        max_total_bytes=s.max_total_bytes,
        max_chunks=chunk_limit(s),
        labels={"meeting_id": ref.meeting_id, "take": ref.take},
    )


def missing_in(
    chunks: list[ObjectInfo], options: MarkerOptions, max_chunks: int
) -> dict[str, list[ChunkRange]]:
    """The runs of chunk indices the marker's counts (or a hole in the numbering) say are
    missing; ``LimitExceeded`` for counts or indices past ``max_chunks``."""
    present: dict[str, list[int]] = {}
    for chunk in chunks:
        parsed = parse_chunk_name(chunk.name)
        if parsed is not None:
            present.setdefault(parsed[0], []).append(parsed[1])
    return missing_chunks(
        present, options.video_chunks, options.audio_chunks, max_chunks=max_chunks
    )


async def read_marker(storage: Storage, key: str) -> MarkerOptions | BadMarker | None:
    """A marker's options from the bucket, or the error that fails its take; None if the
    marker is gone. An oversized marker is refused unread."""
    try:
        found = await storage.get_bytes(key, MAX_MARKER_BYTES)
    except ObjectTooLarge:
        return BadMarker(f"marker is over {MAX_MARKER_BYTES} bytes")
    if found is None:
        return None
    try:
        return parse_marker(found[0])
    except BadMarker as e:
        return e
