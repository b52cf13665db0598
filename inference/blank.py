"""Images with nothing to describe (one colour, or a few pixels): an honest caption instead of the model's guess.

A caption model asked about a blank white image answers with its most common training caption ("a man in a blue
shirt"); here the pixels decide first. An image is blank when its smaller side is under ``MIN_SIDE`` pixels or when
its grey levels barely vary (standard deviation under ``MAX_STD`` of 255, on 64×64 nearest-neighbour samples).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

MIN_SIDE = 8
MAX_STD = 4.0

# (name, RGB) reference colours for the words of a blank image's caption
COLOURS = [
    ("white", (255, 255, 255)),
    ("black", (0, 0, 0)),
    ("grey", (128, 128, 128)),
    ("red", (200, 30, 30)),
    ("green", (40, 160, 60)),
    ("blue", (40, 80, 200)),
    ("yellow", (240, 220, 40)),
    ("orange", (240, 140, 30)),
    ("purple", (130, 50, 160)),
    ("pink", (240, 150, 190)),
    ("brown", (120, 75, 40)),
]


def colour_name(rgb: np.ndarray) -> str:
    """The nearest reference colour's name (light greys are "white", dark ones "black")."""
    r, g, b = (float(v) for v in rgb)
    if max(r, g, b) - min(r, g, b) < 24:  # unsaturated: a grey level
        level = (r + g + b) / 3
        return "white" if level > 200 else "black" if level < 50 else "grey"
    return min(COLOURS[3:], key=lambda c: sum((a - b) ** 2 for a, b in zip(c[1], (r, g, b), strict=True)))[0]


def describe_blank(img: Image.Image) -> str | None:
    """ "A blank white image." for an image with nothing in it, else None."""
    if min(img.size) < MIN_SIDE:
        small = np.asarray(img.convert("RGB"), dtype=np.float32).reshape(-1, 3)
        return f"A tiny {colour_name(small.mean(0))} image of {img.size[0]}×{img.size[1]} pixels."
    # nearest-neighbour samples: a blank image has the same value everywhere, and this costs next to nothing
    rgb = img if img.mode == "RGB" else img.convert("RGB")  # the served path gives RGB already: no copy
    thumb = np.asarray(rgb.resize((64, 64), Image.Resampling.NEAREST), dtype=np.float32).reshape(-1, 3)
    if thumb.mean(1).std() < MAX_STD and thumb.std(0).max() < MAX_STD:
        return f"A blank {colour_name(thumb.mean(0))} image."
    return None
