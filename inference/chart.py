"""Charts: a rendered bar, line or pie chart is described as a chart, not as a guessed photo.

The caption model only knows photos and ImageNet has no chart class, so a bar chart got "Possibly a man in a white
jacket …". A chart is a drawn graphic: a flat background (one colour covers at least ``MIN_BACKGROUND`` of a
128×128 nearest-neighbour thumbnail), few colours (``MAX_COLOURS`` 4-bit-per-channel colours cover 95 % of it), and
coloured marks (bars, lines, wedges: saturated pixels off the background) with axes (a long straight line across
a row and a column; marks at least ``MIN_MARKS``) or large coloured areas (a pie; at least ``MIN_AREA``). Chosen on
rendered charts, screenshots, code and memes (``tests/text_samples.py``) and the 1,107 dev photos (none of which
it calls a chart; ``bench/chart_check.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

MIN_BACKGROUND = 0.40
MAX_COLOURS = 24
MIN_MARKS = 0.005
MIN_AREA = 0.15
AXIS_RUN = 0.5  # share of a row / column an axis line spans
SIZE = 128
CHART_CONFIDENCE = 0.9  # of "A chart.": no dev photo was called one, 3 of 3 rendered charts were
BORDER = 4


def _longest_run(line: np.ndarray) -> int:
    """Length of the longest run of True in a 1-d boolean array."""
    if not line.any():
        return 0
    padded = np.concatenate([[0], line.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())


def has_axes(dark: np.ndarray) -> bool:
    """Whether the line-pixel mask [H, W] has a long horizontal and a long vertical straight line."""
    n = dark.shape[0]
    rows = max(_longest_run(r) for r in dark)
    cols = max(_longest_run(c) for c in dark.T)
    return rows >= AXIS_RUN * n and cols >= AXIS_RUN * n * 0.6


class Palette(NamedTuple):
    """An image's thumbnail [SIZE, SIZE, 3], its 4-bit colour code per pixel and the flat background's code (None
    when the image is not a drawn graphic: no colour covers ``MIN_BACKGROUND``, or more than ``MAX_COLOURS`` cover
    95 %). Computed once per image (:func:`palette`) and shared by the chart and graphic checks."""

    thumb: np.ndarray
    codes: np.ndarray
    background: int | None


def palette(img: Image.Image) -> Palette:
    """The :class:`Palette` of ``img``."""
    thumb = np.asarray(img.convert("RGB").resize((SIZE, SIZE), Image.Resampling.NEAREST), dtype=np.int16)
    q = thumb // 16
    codes = (q[..., 0] * 256 + q[..., 1] * 16 + q[..., 2]).reshape(-1)
    per_code = np.bincount(codes, minlength=4096)  # as np.unique(codes, return_counts=True), without the sort
    values = np.flatnonzero(per_code)
    counts = per_code[values]
    order = np.argsort(-counts)
    share = counts[order] / codes.size
    if share[0] < MIN_BACKGROUND or int(np.searchsorted(np.cumsum(share), 0.95)) + 1 > MAX_COLOURS:
        return Palette(thumb, codes, None)
    return Palette(thumb, codes, int(values[order[0]]))


def is_flat_graphic(img: Image.Image, colours: Palette | None = None) -> bool:
    """A drawn image (screenshot, slide, chart, meme template): a flat background and few colours. None of the
    1,107 dev photos is one; such an image is worth the text detector's look even when the labels say nothing.
    ``colours``: the image's :func:`palette` where the caller has it already."""
    return (colours or palette(img)).background is not None


def looks_like_chart(img: Image.Image, colours: Palette | None = None) -> bool:
    """Whether ``img`` is a drawn chart (see the module docstring); ``colours`` as for :func:`is_flat_graphic`."""
    thumb, codes, background = colours or palette(img)
    if background is None:
        return False
    flat = thumb.reshape(-1, 3)
    saturated = (flat.max(1) - flat.min(1)) >= 60
    marks = float((saturated & (codes != background)).mean())
    if marks < MIN_MARKS:
        return False
    if marks >= MIN_AREA:
        return True
    # axes are thin: averaged (BOX) rather than sampled, so a 2-pixel line survives the shrink; the outer pixels
    # are left out, so a photo's dark frame is not taken for axes
    grey = np.asarray(img.convert("L").resize((SIZE, SIZE), Image.Resampling.BOX), dtype=np.int16)
    bg_grey = int(np.median(grey))
    lines = np.abs(grey - bg_grey) >= 40
    return has_axes(lines[BORDER:-BORDER, BORDER:-BORDER])


def describe_chart(img: Image.Image, colours: Palette | None = None) -> str | None:
    """ "A chart." for a drawn chart, else None; ``colours`` as for :func:`is_flat_graphic`."""
    return "A chart." if looks_like_chart(img, colours) else None
