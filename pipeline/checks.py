"""What a service checks before its first take: the encoder opens, the model loads.

Each raises with the reason when the check fails and returns a short description when it
passes. They load codecs and a model, so a service runs them in a worker process.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from pipeline.transcribe import EngineName, load_engine


class EncoderUnavailable(Exception):
    """libx264 does not open with the given options."""


def check_encoder(preset: str, crf: int = 23) -> str:
    """Open libx264 as a take's encode would (yuv420p, the preset and CRF)."""
    import av
    import av.error

    context = av.CodecContext.create("libx264", "w")
    context.width = context.height = 64
    context.pix_fmt = "yuv420p"
    context.time_base = Fraction(1, 30)
    context.framerate = Fraction(30, 1)
    context.options = {"preset": preset, "crf": str(crf)}
    try:
        context.open()
    except (av.error.FFmpegError, ValueError) as e:
        raise EncoderUnavailable(f"libx264 does not open with preset {preset!r}: {e}") from None
    return f"libx264 opens with preset {preset}, CRF {crf}"


def check_model(
    engine: EngineName,
    model: str,
    *,
    device: str = "auto",
    compute_type: str | None = None,
    threads: int = 0,
    model_dir: Path | None = None,
) -> str:
    """Load the model as a take would; raises ``TranscriptionError`` saying where it looked."""
    load_engine(
        engine,
        model,
        device=device,
        compute_type=compute_type,
        threads=threads,
        model_dir=model_dir,
    )
    return f"{engine} model {model} loads"
