"""Attention heatmaps: the image, then one panel per word, each showing where the model looked."""

from __future__ import annotations

import io

import numpy as np
from captionbot.inference.heatmap import COLUMNS, PANEL, panel_origin, render_heatmap
from PIL import Image

GRID = (7, 7)


def panels_drawn(png: bytes, n_cells: int) -> list[bool]:
    """For each cell of the sheet's grid, whether a picture is drawn there (not blank white)."""
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    drawn = []
    for k in range(n_cells):
        x, y = panel_origin(k)
        tile = sheet[y : y + PANEL, x : x + PANEL]
        drawn.append(tile.size > 0 and float(np.abs(tile - 255).mean()) > 10)
    return drawn


def test_one_panel_per_word_plus_the_image():
    img = Image.new("RGB", (300, 200), (90, 120, 60))
    rng = np.random.default_rng(0)
    for words in (["a", "dog"], ["a", "dog", "runs", "on", "the", "grass"]):
        alphas = rng.dirichlet(np.ones(49), size=len(words)).astype(np.float32)
        png = render_heatmap(img, words, alphas, GRID)
        cells = 2 * COLUMNS + 4  # more cells than could be used
        assert sum(panels_drawn(png, cells)) == len(words) + 1


def test_the_panel_lights_up_where_the_word_looked():
    img = Image.new("RGB", (224, 224), (128, 128, 128))
    top_left = np.zeros(49, dtype=np.float32)
    top_left[0] = 1.0
    bottom_right = np.zeros(49, dtype=np.float32)
    bottom_right[48] = 1.0
    png = render_heatmap(img, ["dog", "grass"], np.stack([top_left, bottom_right]), GRID)
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    q = PANEL // 4

    def corner_brightness(k: int, corner: str) -> float:
        x0, y0 = panel_origin(k)
        x, y = (x0, y0) if corner == "tl" else (x0 + PANEL - q, y0 + PANEL - q)
        return float(sheet[y : y + q, x : x + q].mean())

    assert corner_brightness(1, "tl") > corner_brightness(1, "br") + 20  # "dog" looked top left
    assert corner_brightness(2, "br") > corner_brightness(2, "tl") + 20  # "grass" looked bottom right


def test_png_size_is_bounded():
    noisy = Image.fromarray(np.random.default_rng(1).integers(0, 255, (400, 400, 3), dtype=np.uint8))
    words = ["word"] * 22
    alphas = np.full((22, 49), 1 / 49, dtype=np.float32)
    png = render_heatmap(noisy, words, alphas, GRID, max_bytes=300_000)
    assert len(png) <= 300_000
    assert Image.open(io.BytesIO(png)).format == "PNG"
