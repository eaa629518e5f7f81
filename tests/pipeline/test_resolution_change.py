"""A take whose picture changes size (a camera switch, a window resize): every frame is
fitted into the take's first size, aspect kept, padded black, never stretched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pipeline.copyable import _nal_types
from pipeline.errors import LimitExceeded
from pipeline.letterbox import fit_into, fitted_size
from pipeline.options import MediaOptions
from pipeline.process import TakeOptions, process_take
from tests.support.mediaprobe import streams
from tests.support.takes import make_resized_take

SECONDS = 0.6  # at each size: 320x240, then 240x320 (portrait), then 320x180


def luma_by_time(path: Path) -> list[tuple[float, np.ndarray]]:
    """Each decoded frame's time and luma plane (limited range: black is 16)."""
    with av.open(str(path)) as c:
        return [
            (float(f.time or 0.0), f.to_ndarray()[: f.height].astype(np.int16))
            for f in c.decode(c.streams.video[0])
        ]


def is_black(region: np.ndarray) -> bool:
    return bool(np.abs(region - 16).mean() < 2 and np.abs(region - 16).max() < 16)


@pytest.mark.parametrize(
    ("codec", "layout"),
    [("vp8", "split"), ("vp8", "restarted"), ("h264", "split"), ("h264", "restarted")],
)
def test_a_size_change_is_fitted_into_the_first_size_and_padded(
    tmp_path: Path, codec: Any, layout: Any
) -> None:
    """VP8 is decoded anyway; H.264, copied when it keeps one size, is decoded and
    encoded again when it changes size (a new SPS at a keyframe, or a restarted file
    with parameter sets of its own), so the change is fitted the same way."""
    spec = make_resized_take(tmp_path / "in", seconds=SECONDS, layout=layout, video_codec=codec)
    result = process_take(
        tmp_path / "in", tmp_path / "out", tmp_path / "w", TakeOptions("u1", transcribe=False)
    )
    assert result.video is not None
    assert (result.video["width"], result.video["height"]) == (320, 240)
    assert result.video["copied"] is False
    assert result.warnings == []
    out = result.outputs["video"]
    assert streams(out)["video"].packets == spec.video_frames == 54
    with av.open(str(out)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (320, 240)
    frames = luma_by_time(out)
    assert len(frames) == spec.video_frames
    for t, y in frames:
        assert y.shape == (240, 320)
        if t < SECONDS - 0.01:  # the first size: the whole picture, no bars
            assert not is_black(y[:, :48]) and not is_black(y[:16, :])
        elif t < 2 * SECONDS - 0.01:  # 240x320 portrait fitted as 180x240: bars at the sides
            assert is_black(y[:, :64]) and is_black(y[:, 256:]), t
            assert y[:, 80:240].std() > 20 and np.abs(y[:, 80:240] - 16).mean() > 40
        else:  # 320x180 fitted as 320x180: bars above and below (30 rows each)
            assert is_black(y[:16, :]) and is_black(y[224:, :]), t
            assert y[40:200, :].std() > 20 and np.abs(y[40:200, :] - 16).mean() > 40


def test_fitted_size_keeps_the_aspect_in_even_numbers() -> None:
    assert fitted_size((240, 320), (320, 240)) == (180, 240)
    assert fitted_size((320, 180), (320, 240)) == (320, 180)
    assert fitted_size((1280, 720), (320, 240)) == (320, 180)
    assert fitted_size((640, 480), (320, 240)) == (320, 240)
    assert fitted_size((101, 5000), (320, 240)) == (4, 240)
    assert fitted_size((5000, 1), (2, 2)) == (2, 2)


def test_fit_into_pads_with_black_around_the_centred_picture() -> None:
    white = np.full((320 * 3 // 2, 240), 235, np.uint8)  # 240x320, luma white, chroma 235
    frame = fit_into(av.VideoFrame.from_ndarray(white, format="yuv420p"), 320, 240)
    assert (frame.width, frame.height, frame.format.name) == (320, 240, "yuv420p")
    y = frame.to_ndarray()[:240]
    assert (y[:, :70] == 16).all() and (y[:, 250:] == 16).all()
    assert (y[:, 70:250] == 235).all()


def test_a_copied_h264_stream_that_grows_past_the_limit_is_refused(tmp_path: Path) -> None:
    """The header says 320x240 (within the limit); a keyframe's new SPS says 240x320. The
    copy path decodes no picture, so the keyframes are read before copying."""
    make_resized_take(tmp_path / "in", seconds=SECONDS, video_codec="h264", audio=None)
    options = TakeOptions("u1", media=MediaOptions(max_width=320, max_height=240), transcribe=False)
    with pytest.raises(LimitExceeded, match="240x320, over the limit of 320x240"):
        process_take(tmp_path / "in", tmp_path / "out", tmp_path / "w", options)
    assert not (tmp_path / "w" / "encoded.ts").exists()  # refused before the heavy work


def test_nal_unit_types_are_read_from_both_h264_layouts() -> None:
    sps, idr, slice_ = b"\x67\x42\x00", b"\x65\x88\x84\x00", b"\x41\x9a"
    avcc = b"".join(len(u).to_bytes(4, "big") + u for u in (sps, idr, slice_))
    assert list(_nal_types(avcc, 4)) == [7, 5, 1]
    annex_b = b"".join(b"\x00\x00\x00\x01" + u for u in (sps, idr, slice_))
    assert list(_nal_types(annex_b, None)) == [7, 5, 1]
    assert list(_nal_types(b"\xff\xff\xff\xff\x67", 4)) == [7]  # a lying length ends it
