"""Pictures of another size fitted into the take's frame size: aspect kept, padded black.

A camera switch or a window resize changes the size of a recording mid-take (320x240,
then a 240x320 portrait camera, then 320x180). The take keeps its first frame size; a
picture of another size is scaled to fit inside it with its aspect ratio kept (the
largest even size that fits) and centred on black: bars left and right for a narrower
picture (pillarbox), above and below for a wider one (letterbox). Stretching it to the
first size instead would distort every face in it.

The padding is numpy on the yuv420p planes: one scaled copy of the picture pasted into
a black frame, a fraction of what encoding the frame costs. Pixels are taken as square
(browsers record square pixels).
"""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt

# Black in yuv420p as encoders take it (limited range): luma 16, neutral chroma 128.
BLACK_LUMA, NEUTRAL_CHROMA = 16, 128


def fitted_size(size: tuple[int, int], into: tuple[int, int]) -> tuple[int, int]:
    """The largest even size with the aspect ratio of ``size`` that fits in ``into``
    (itself even): 240x320 into 320x240 is 180x240."""
    (width, height), (max_width, max_height) = size, into
    scale = min(max_width / max(1, width), max_height / max(1, height))
    fit_width = min(max_width, max(2, round(width * scale / 2) * 2))
    fit_height = min(max_height, max(2, round(height * scale / 2) * 2))
    return fit_width, fit_height


def _planes(
    data: npt.NDArray[np.uint8], width: int, height: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Views of the Y, U and V planes of a yuv420p picture laid out as PyAV's
    ``to_ndarray``/``from_ndarray`` lay it out: (height * 3 / 2, width), planes in a row."""
    flat = data.reshape(-1)
    luma = width * height
    quarter = luma // 4
    return (
        flat[:luma].reshape(height, width),
        flat[luma : luma + quarter].reshape(height // 2, width // 2),
        flat[luma + quarter : luma + 2 * quarter].reshape(height // 2, width // 2),
    )


def fit_into(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """``frame`` as a yuv420p picture of ``width`` x ``height`` (both even): as it is when
    its size matches, else scaled with its aspect kept and centred on black.
    The caller sets the time of the returned frame."""
    if (frame.width, frame.height) == (width, height):
        return frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")
    fit_width, fit_height = fitted_size((frame.width, frame.height), (width, height))
    picture = frame.reformat(width=fit_width, height=fit_height, format="yuv420p")
    if (fit_width, fit_height) == (width, height):
        return picture
    canvas = np.empty(width * height * 3 // 2, np.uint8)
    out_y, out_u, out_v = _planes(canvas, width, height)
    out_y.fill(BLACK_LUMA)
    out_u.fill(NEUTRAL_CHROMA)
    out_v.fill(NEUTRAL_CHROMA)
    y, u, v = _planes(picture.to_ndarray().astype(np.uint8, copy=False), fit_width, fit_height)
    top, left = (height - fit_height) // 4 * 2, (width - fit_width) // 4 * 2  # even
    out_y[top : top + fit_height, left : left + fit_width] = y
    out_u[top // 2 : (top + fit_height) // 2, left // 2 : (left + fit_width) // 2] = u
    out_v[top // 2 : (top + fit_height) // 2, left // 2 : (left + fit_width) // 2] = v
    return av.VideoFrame.from_ndarray(canvas.reshape(height * 3 // 2, width), format="yuv420p")
