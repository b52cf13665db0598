"""Attention heatmaps as one PNG, like the figures of Xu et al. (2015): the image, then one panel per content word
with the attention that produced it upsampled, smoothed and blended over the image, the word written beneath.

Only content words get a panel ("dog", "running", "grass"; not "a", "the", "is": ``inference/attention_words.py``),
and each panel outlines its strongest grid cell (none when the map is flat). The PNG carries its own alt text in a
``Description`` text chunk: where each content word was found, "dog: lower left; ball: centre"
(:func:`heatmap_description` reads it back; the bot uses it as the attachment's description).

Sized for a chat preview: panels of 192 px in rows of four (768 px wide), a legible word under each. The PNG is
kept under ``max_bytes`` by palette quantisation and, if still needed, smaller panels.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from captionbot.inference.attention_words import content_indices, is_flat, strongest_cell, where_words_looked
from PIL import Image, ImageDraw, ImageFilter, ImageFont, PngImagePlugin

from captionbot.heatmap_text import DESCRIPTION_KEY, MAX_DESCRIPTION, heatmap_description  # noqa: F401

PANEL = 192  # px, square image area of a panel
COLUMNS = 4
MAX_BYTES = 1_500_000
log = logging.getLogger(__name__)

# A perceptual-ish colour ramp (dark blue -> teal -> yellow), like viridis, as 5 stops interpolated linearly.
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32)


def _colourise(a: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> [H, W, 3] uint8 along the ramp."""
    x = a * (len(_RAMP) - 1)
    lo = np.clip(np.floor(x).astype(int), 0, len(_RAMP) - 2)
    f = (x - lo)[..., None]
    return ((1 - f) * _RAMP[lo] + f * _RAMP[lo + 1]).astype(np.uint8)


def attention_overlay(img: Image.Image, alpha: np.ndarray, grid: tuple[int, int], size: int) -> Image.Image:
    """One panel: ``alpha`` [P] over the ``grid`` (H', W') upsampled to ``size`` and blended over ``img``, its
    strongest cell outlined unless the map is flat."""
    a = np.asarray(alpha, dtype=np.float32).reshape(grid)
    a = a / max(float(a.max()), 1e-8)  # each word's map on its own scale: where it looked, not how sharply
    up = Image.fromarray((a * 255).astype(np.uint8), "L").resize((size, size), Image.Resampling.BICUBIC)
    up = up.filter(ImageFilter.GaussianBlur(radius=size / (3 * max(grid))))
    heat = np.asarray(up, dtype=np.float32) / 255.0
    base = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    # Xu et al. show attended regions bright and the rest dimmed; the colour ramp makes the peak easy to find.
    weight = (0.35 + 0.65 * heat)[..., None]
    blended = 0.55 * base * weight + 0.45 * _colourise(heat).astype(np.float32) * (0.3 + 0.7 * heat[..., None])
    panel = Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), "RGB")
    if not is_flat(alpha):
        _outline(panel, strongest_cell(alpha, grid), grid)
    return panel


def _outline(panel: Image.Image, cell: tuple[int, int], grid: tuple[int, int]) -> None:
    """Draw a box around grid ``cell`` of ``panel``: white inside black, visible on light and dark images alike."""
    size = panel.width
    r, c = cell
    x0, y0 = c * size / grid[1], r * size / grid[0]
    x1, y1 = (c + 1) * size / grid[1], (r + 1) * size / grid[0]
    width = max(2, size // 64)
    if size / max(grid) < 16:  # a fine grid's small cell (14×14 in a 192 px panel: 14 px): a thin box, not a blob
        width = 1
    draw = ImageDraw.Draw(panel)
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=(0, 0, 0), width=width + 2)
    draw.rectangle((x0 + 1, y0 + 1, x1 - 2, y1 - 2), outline=(255, 255, 255), width=width)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (needs FreeType)
    except (TypeError, OSError):
        return ImageFont.load_default()


def _spacing(panel: int) -> tuple[int, int]:
    """(padding, height of the word band under a panel) for a panel size."""
    return max(4, panel // 32), max(20, panel // 5)


def panel_origin(k: int, panel: int = PANEL) -> tuple[int, int]:
    """Top-left (x, y) of panel ``k`` on the sheet (0 = the image, 1.. = the words)."""
    pad, label_h = _spacing(panel)
    return pad + (k % COLUMNS) * (panel + pad), pad + (k // COLUMNS) * (panel + label_h + pad)


def _layout(img: Image.Image, words: list[str], alphas: np.ndarray, grid: tuple[int, int], panel: int) -> Image.Image:
    pad, label_h = _spacing(panel)
    font = _font(int(label_h * 0.8))  # ~30 px on a 768 px sheet: still ~15 px when a chat shrinks it to 400
    n = len(words) + 1  # the image itself, then one panel per word
    cols = min(COLUMNS, n)
    rows = -(-n // cols)
    sheet = Image.new("RGB", (cols * (panel + pad) + pad, rows * (panel + label_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    panels = [(img.resize((panel, panel), Image.Resampling.BILINEAR), "")]
    panels += [(attention_overlay(img, alphas[i], grid, panel), w) for i, w in enumerate(words)]
    for k, (im, word) in enumerate(panels):
        x, y = panel_origin(k, panel)
        sheet.paste(im, (x, y))
        if word:
            tw = draw.textlength(word, font=font)
            draw.text((x + (panel - tw) / 2, y + panel + label_h * 0.1), word, fill=(0, 0, 0), font=font)
    return sheet


def render_heatmap(
    img: Image.Image,
    words: list[str],
    alphas: np.ndarray,
    grid: tuple[int, int],
    panel: int = PANEL,
    max_bytes: int = MAX_BYTES,
) -> bytes:
    """PNG bytes: ``img`` and one panel per content word of ``words`` (``alphas`` [len(words), P]; every word
    when none is a content word), with the alt text of :func:`heatmap_description`; at most ``max_bytes``."""
    if len(alphas) < len(words):
        raise ValueError(f"{len(words)} words but attention for {len(alphas)}")
    keep = content_indices(words) or list(range(len(words)))
    shown, shown_alphas = [words[i] for i in keep], np.asarray(alphas)[keep]
    info = PngImagePlugin.PngInfo()
    info.add_itxt(DESCRIPTION_KEY, where_words_looked(words, np.asarray(alphas), grid)[:MAX_DESCRIPTION])
    size = panel
    while True:
        sheet = _layout(img.convert("RGB"), shown, shown_alphas, grid, size)
        for candidate in (sheet, sheet.quantize(256, method=Image.Quantize.MEDIANCUT)):
            buf = io.BytesIO()
            candidate.save(buf, format="PNG", optimize=True, pnginfo=info)
            if buf.tell() <= max_bytes:
                return buf.getvalue()
        if size <= 48:
            return buf.getvalue()  # words and layout alone exceed the budget: give the smallest we can
        size = int(size * 0.75)
