"""Image bytes -> the encoder's input array. Shared by the runtime and by training's feature cache, so the
model sees exactly the same pixels in training and in production. Torch-free (Pillow + numpy).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from captionbot.formats import ErrorCode, ImageRejected

DEFAULT_MAX_PIXELS = 40_000_000


def decode_image(data: bytes, size: tuple[int, int] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bytes to an upright RGB image. ``size`` (H, W) lets JPEG decode at a reduced scale (draft mode)."""
    try:
        img = Image.open(io.BytesIO(data))
    except Exception as exc:
        raise ImageRejected(ErrorCode.NOT_AN_IMAGE, f"{type(exc).__name__}: {exc}") from exc
    w, h = img.size
    if w * h > max_pixels:
        raise ImageRejected(ErrorCode.TOO_MANY_PIXELS, f"{w}x{h} > {max_pixels} pixels")
    if size is not None and img.format == "JPEG":
        img.draft("RGB", (size[1], size[0]))  # decode at 1/2, 1/4 or 1/8 scale when that still covers `size`
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
    except Exception as exc:
        raise ImageRejected(ErrorCode.TRUNCATED, f"{type(exc).__name__}: {exc}") from exc
    return img.convert("RGB")


def to_array(
    img: Image.Image, size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]
) -> np.ndarray:
    """RGB image -> float32 [3, H, W], resized to ``size`` (H, W) (aspect not kept, as in training) and normalised."""
    resized = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    x = np.asarray(resized, dtype=np.float32) / 255.0  # [H, W, 3]
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))
