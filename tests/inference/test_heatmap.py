"""Attention heatmaps: the image, then one panel per content word, each showing where the model looked, with
its strongest region outlined; the PNG carries alt text saying where each content word was found."""

from __future__ import annotations

import io
from itertools import combinations

import numpy as np
import pytest
from captionbot.inference.attention_words import content_indices, region_name, where_words_looked
from captionbot.inference.captioner import Captioner, CaptionOutput
from captionbot.inference.heatmap import COLUMNS, PANEL, heatmap_description, panel_origin, render_heatmap
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


def test_one_panel_per_content_word_plus_the_image():
    img = Image.new("RGB", (300, 200), (90, 120, 60))
    rng = np.random.default_rng(0)
    cells = 2 * COLUMNS + 4  # more cells than could be used
    for words, panels in ((["a", "dog"], 1), (["a", "dog", "runs", "on", "the", "grass"], 3),
                          (["a", "brown", "dog", "is", "playing", "with", "a", "ball", "in", "the", "water"], 5)):
        alphas = rng.dirichlet(np.ones(49), size=len(words)).astype(np.float32)
        png = render_heatmap(img, words, alphas, GRID)
        assert sum(panels_drawn(png, cells)) == panels + 1


def test_the_strongest_region_is_named_in_words():
    lower_left, centre, upper_right = (np.zeros(49, dtype=np.float32) for _ in range(3))
    lower_left[6 * 7 + 0] = 1.0
    centre[3 * 7 + 3] = 1.0
    upper_right[0 * 7 + 6] = 1.0
    flat = np.full(49, 1 / 49, dtype=np.float32)
    assert [region_name(a, GRID) for a in (lower_left, centre, upper_right)] == ["lower left", "centre", "upper right"]
    assert region_name(flat, GRID) == "across the whole image"  # no place is claimed where the model had none
    words = ["a", "dog", "with", "a", "ball"]
    alphas = np.stack([flat, lower_left, flat, flat, centre])
    assert where_words_looked(words, alphas, GRID) == "dog: lower left; ball: centre"
    png = render_heatmap(Image.new("RGB", (224, 224), (128, 128, 128)), words, alphas, GRID)
    assert heatmap_description(png) == "dog: lower left; ball: centre"


def test_the_strongest_region_is_outlined():
    img = Image.new("RGB", (224, 224), (128, 128, 128))
    alpha = np.full(49, 0.5 / 48, dtype=np.float32)
    alpha[6 * 7 + 0] = 0.5  # lower left cell
    png = render_heatmap(img, ["dog"], alpha[None], GRID)
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)
    x0, y0 = panel_origin(1)
    cell = PANEL / 7
    top_edge = sheet[y0 + round(6 * cell) + 1, x0 + 2 : x0 + round(cell) - 2]  # the box's white line
    assert (top_edge > 240).mean() > 0.8
    assert (sheet[y0 + round(2 * cell) + 1, x0 + 2 : x0 + round(cell) - 2] > 240).mean() < 0.2  # no box up there


def test_not_a_png_has_no_description():
    assert heatmap_description(b"\x89PNG not really") == ""
    assert heatmap_description(b"") == ""


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


@pytest.fixture(scope="module")
def photo_outputs(caption_bundle, data_dir) -> list[CaptionOutput]:
    """Served captions with heatmaps of the first 6 Flickr8k dev photos."""
    names = sorted((data_dir / "flickr8k" / "Flickr_8k.devImages.txt").read_text().split())[:6]
    cap = Captioner.load(caption_bundle, provider="cpu", threads=1, read_text=False)
    outs = cap.caption_images([(data_dir / "flickr8k" / "images" / n).read_bytes() for n in names], heatmap=True)
    assert all(isinstance(o, CaptionOutput) for o in outs)
    return [o for o in outs if isinstance(o, CaptionOutput)]


def test_real_photos_get_panels_only_for_content_words(photo_outputs):
    for out in photo_outputs:
        assert out.heatmap_png is not None
        content = [out.words[i] for i in content_indices(out.words)]
        assert content, out.caption
        assert not {"a", "the", "is", "are", "in", "on", "of", "with"} & set(content)
        assert sum(panels_drawn(out.heatmap_png, 4 * COLUMNS)) == len(content) + 1, out.caption


def test_real_photos_alt_text_names_a_region_for_each_content_word(photo_outputs):
    regions = {f"{r} {c}" for r in ("upper", "lower") for c in ("left", "centre", "right")}
    regions |= {"middle left", "centre", "middle right", "across the whole image"}
    for out in photo_outputs:
        assert out.heatmap_png is not None
        parts = [p.split(": ") for p in heatmap_description(out.heatmap_png).split("; ")]
        assert [w for w, _ in parts] == [out.words[i] for i in content_indices(out.words)], out.caption
        assert all(where in regions for _, where in parts), parts


def test_real_photos_give_different_content_words_different_maps(photo_outputs):
    """Issue 19: the heatmap is worth opening only if words look in different places. On each real photo the two
    most different content words' maps are at least 0.1 apart (total variation; measured 0.19-0.36 with the
    shipped model) and peak in different cells; over all pairs of different content words the mean distance is at
    least 0.1 (measured 0.16: issue 19's bar for a finished fix is 0.35, docs/model.md)."""
    distances = []
    for out in photo_outputs:
        idx = content_indices(out.words)
        pairs = [(i, j) for i, j in combinations(idx, 2) if out.words[i] != out.words[j]]
        assert pairs, out.caption
        tv = [0.5 * float(np.abs(out.alphas[i] - out.alphas[j]).sum()) for i, j in pairs]
        i, j = pairs[int(np.argmax(tv))]
        assert max(tv) >= 0.1, (out.caption, out.words[i], out.words[j], max(tv))
        assert len({int(np.argmax(out.alphas[k])) for k in idx}) >= 2, out.caption  # peaks in different cells
        distances += tv
    assert float(np.mean(distances)) >= 0.1, distances


def test_a_14x14_grid_is_drawn_outlined_and_named_on_a_real_photo(data_dir):
    """The local-grid encoder's 196 cells (issue 19): maps of two words over a real photo land where they peak."""
    grid = (14, 14)
    name = sorted((data_dir / "flickr8k" / "Flickr_8k.devImages.txt").read_text().split())[0]
    img = Image.open(data_dir / "flickr8k" / "images" / name).convert("RGB")
    rng = np.random.default_rng(0)
    dog, ball = (rng.dirichlet(np.ones(196)).astype(np.float32) * 0.4 for _ in range(2))
    dog[13 * 14 + 1] += 0.6  # lower left (row 13, column 1)
    ball[6 * 14 + 7] += 0.6  # centre
    words = ["a", "dog", "with", "a", "ball"]
    flat = np.full(196, 1 / 196, dtype=np.float32)
    png = render_heatmap(img, words, np.stack([flat, dog, flat, flat, ball]), grid)
    assert heatmap_description(png) == "dog: lower left; ball: centre"
    assert sum(panels_drawn(png, 2 * COLUMNS)) == 3
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    x0, y0 = panel_origin(1)
    cell = PANEL / 14

    def white(y: float, x: float) -> bool:
        return bool((sheet[y0 + round(y), x0 + round(x)] > 240).all())

    # the dog panel's box: the white line one pixel inside the cell's top edge, and nothing like it elsewhere
    top = [white(13 * cell + 1, 1 * cell + dx) for dx in range(3, round(cell) - 3)]
    assert np.mean(top) > 0.8
    assert np.mean([white(2 * cell + 1, 10 * cell + dx) for dx in range(3, round(cell) - 3)]) < 0.2
    # a thin box on so small a cell: a third of the cell still shows the photo (the 7×7 grid's box covered 91 %)
    tile = sheet[y0 + round(13 * cell) : y0 + round(14 * cell), x0 + round(cell) : x0 + round(2 * cell)]
    assert ((tile > 240).all(-1) | (tile < 15).all(-1)).mean() < 0.75
