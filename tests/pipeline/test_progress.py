"""The take's progress, as the status record and the progress bar show it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.process import TakeOptions, process_take
from tests.support.takes import make_take


@pytest.mark.parametrize("layout", ["split", "restarted"])
def test_progress_never_goes_back_from_start_to_end(tmp_path: Path, layout: str) -> None:
    """Video and audio tracks are read side by side: the progress is their bytes summed,
    over stages weighted into one climb from 0 to 1 (transcription included)."""
    make_take(tmp_path / "in", duration=3.0, layout=layout, chunks=4)  # type: ignore[arg-type]
    seen: list[tuple[str, float]] = []
    process_take(
        tmp_path / "in",
        tmp_path / "out",
        tmp_path / "w",
        TakeOptions("u1"),
        lambda stage, fraction: seen.append((stage, fraction)),
    )
    values = [fraction for _, fraction in seen]
    assert values == sorted(values), seen
    assert values[0] < 0.05 and values[-1] == 1.0
    assert [s for s, _ in seen if s != "encode"] == ["plan", "transcribe", "mux", "done"]
    encoding = [f for s, f in seen if s == "encode"]
    assert len(set(encoding)) > 10 and encoding[-1] > 0.5  # it moves while encoding
