"""Phone-sized photos for benchmarks and tests, made at run time from real photos (never committed).

A phone camera writes ~12-megapixel JPEGs (4032x3024), and a portrait shot is usually stored landscape with an
EXIF Orientation tag that says "rotate 90° clockwise to view". The Flickr8k photos in ../shared/data are small
(224x224 or long side <= 384), so this upscales each to ~12 MP keeping its aspect ratio, adds a little
sensor-like grain (an upscaled photo is smoother than a camera's and would compress, and decode, unrealistically
fast; with grain the files are ~2 MB), saves it as a JPEG of phone quality (90, 4:2:0 chroma subsampling) and,
for every other photo, stores it sideways with Orientation 6, as a phone held upright would. The content is the
real photo's, so its caption can be compared with the small one's.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

PHONE_PIXELS = 4032 * 3024  # a 12-megapixel phone camera
ORIENTATION_TAG = 0x0112
ROTATE_90_CW = 6  # EXIF: the stored pixels must be turned 90° clockwise to be upright


def phone_photo(data: bytes, sideways: bool = False, pixels: int = PHONE_PIXELS, quality: int = 90, grain: int = 6,
                seed: int = 0) -> bytes:
    """A small photo's bytes -> the same scene as a ~``pixels`` JPEG (sideways + EXIF Orientation 6 if asked), with
    uniform grain of +-``grain`` levels (seeded: the same bytes every run)."""
    with Image.open(io.BytesIO(data)) as src:
        img = src.convert("RGB")
    scale = math.sqrt(pixels / (img.width * img.height))
    big = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
    if grain:
        noise = np.random.default_rng(seed).integers(-grain, grain + 1, size=(big.height, big.width, 3), dtype=np.int16)
        big = Image.fromarray(np.clip(np.asarray(big, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    if sideways:  # stored turned 90° counter-clockwise; viewers (and our decoder) turn it back
        big = big.transpose(Image.Transpose.ROTATE_90)
        exif[ORIENTATION_TAG] = ROTATE_90_CW
    out = io.BytesIO()
    big.save(out, "JPEG", quality=quality, subsampling="4:2:0", exif=exif.tobytes())
    return out.getvalue()


def phone_photos(photos: list[bytes]) -> list[bytes]:
    """:func:`phone_photo` for each, every other one sideways with its EXIF Orientation."""
    return [phone_photo(d, sideways=bool(i % 2), seed=i) for i, d in enumerate(photos)]
