"""Media that lies or breaks: what an adversarial run found, kept fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import LimitExceeded
from pipeline.options import MediaOptions
from pipeline.process import TakeOptions, TakeResult, process_take
from tests.support.takes import resized_split_take


def run(folder: Path, tmp: Path, media: MediaOptions | None = None) -> TakeResult:
    options = TakeOptions("u1", media=media or MediaOptions(), transcribe=False)
    return process_take(folder, tmp / "out", tmp / "work", options)


def test_a_size_change_past_the_limit_inside_the_stream_is_refused(tmp_path: Path) -> None:
    """The header says 160x120 (within the limit), later keyframes are 320x240: every
    decoded picture is checked, not only the header."""
    resized_split_take(tmp_path / "in", first=(160, 120), then=(320, 240))
    limit = MediaOptions(max_width=160, max_height=120)
    with pytest.raises(LimitExceeded, match="320x240, over the limit of 160x120"):
        run(tmp_path / "in", tmp_path, limit)
    run(tmp_path / "in", tmp_path / "no-limit")  # within limits the take is made
