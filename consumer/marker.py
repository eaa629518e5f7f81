"""The marker a client uploads when a take ends, and the options its JSON body may hold."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from consumer.errors import BadMarker
from pipeline.transcribe import MODEL_NAMES

MAX_MARKER_BYTES = 64 * 1024


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
        data = json.loads(body)
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
