"""Image bytes -> the encoder's input array. Shared by the runtime and by training's feature cache, so the
model sees exactly the same pixels in training and in production. Torch-free (Pillow + numpy).

What real uploads bring, and what happens to it:
- EXIF orientation (phone photos): rotated upright; a broken EXIF block is ignored, not fatal.
- Transparency (RGBA, LA, PA, palette or grey with a transparent colour): composited on white, as a chat client
  shows it on a light theme, instead of Pillow's default of dropping alpha (transparent pixels turn black).
- CMYK, YCbCr, 1-bit, palette: converted to RGB. 16-bit and 32-bit grey (I;16, I, F): scaled to 8 bits, instead
  of being clipped to white.
- Animations (GIF, APNG, WebP): the first frame.
- JPEG: decoded at 1/2, 1/4 or 1/8 scale ("draft" mode) when that still covers the encoder's input size.
- Too many pixels (decompression bombs): refused from the header, before any pixel is decoded.
- Every refusal raises :class:`captionbot.formats.ImageRejected` with an :class:`ErrorCode` the bot can word.
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from captionbot.formats import DECODED_PILLOW_FORMATS, MAX_PIXELS, ErrorCode, ImageRejected

DEFAULT_MAX_PIXELS = MAX_PIXELS
# Formats we decode (every format of ``captionbot.formats.IMAGE_FORMATS``, BMP and TIFF from local files too).
# Others (PSD, EPS, ICO, PDF-ish ...) are refused by name, without ever being decoded.
ACCEPTED_FORMATS = DECODED_PILLOW_FORMATS


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and apply the format and pixel-count checks."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own guard below decides
            img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageRejected(ErrorCode.TOO_MANY_PIXELS, str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise _unaccepted(data) from exc
    except Exception as exc:  # e.g. a header that parses but lies: SyntaxError, OSError, struct.error
        raise ImageRejected(ErrorCode.TRUNCATED, f"{type(exc).__name__}: {exc}") from exc
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageRejected(ErrorCode.TRUNCATED, f"image claims {w}x{h} pixels")
    if w * h > max_pixels:
        raise ImageRejected(ErrorCode.TOO_MANY_PIXELS, f"{w}x{h} > {max_pixels} pixels")
    return img


def _unaccepted(data: bytes) -> ImageRejected:
    """An image in a format we do not accept, or not an image at all (only the header is looked at)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fmt = Image.open(io.BytesIO(data)).format
    except Exception:
        return ImageRejected(ErrorCode.NOT_AN_IMAGE, f"unrecognised bytes starting {data[:8]!r}")
    return ImageRejected(ErrorCode.UNSUPPORTED_FORMAT, f"{fmt} images are not accepted")


def probe_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """Cheap header check before a job is queued: (format, width, height), or :class:`ImageRejected`.

    Reads only the header, so it does not catch a file truncated in its pixel data (decoding does)."""
    img = _open(data, max_pixels)
    return str(img.format), img.size[0], img.size[1]


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; transparency composited on white; high bit depths scaled to 8 bits."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or a.max(initial=0) > 255:
            a = a / 257.0  # 16-bit range -> 8-bit
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    has_alpha = (img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
                 or (img.mode == "P" and img.palette is not None and img.palette.mode == "RGBA"))
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(data: bytes, size: tuple[int, int] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bytes to an upright RGB image. ``size`` (H, W) lets JPEG decode at a reduced scale (draft mode).

    Raises :class:`ImageRejected`: NOT_AN_IMAGE, UNSUPPORTED_FORMAT, TOO_MANY_PIXELS or TRUNCATED."""
    img = _open(data, max_pixels)
    if size is not None and img.format in ("JPEG", "MPO"):
        img.draft("RGB", (size[1], size[0]))  # decode at 1/2, 1/4 or 1/8 scale when that still covers `size`
    try:
        img.load()  # an animation opens on its first frame, and stays there
    except Exception as exc:  # "image file is truncated", broken data stream, bad palette ...
        raise ImageRejected(ErrorCode.TRUNCATED, f"{type(exc).__name__}: {exc}") from exc
    with contextlib.suppress(Exception):  # an unreadable EXIF block: keep the pixels as stored
        img = ImageOps.exif_transpose(img)
    try:
        return _to_rgb(img)
    except Exception as exc:  # a mode Pillow cannot convert (e.g. LAB): tell the user the format is not supported
        raise ImageRejected(ErrorCode.UNSUPPORTED_FORMAT, f"mode {img.mode}: {type(exc).__name__}: {exc}") from exc


@functools.lru_cache(maxsize=8)
def _normalise_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """[3, 256] float32: channel c's normalised value of each 8-bit level, computed with the very float32 operations
    ``(x / 255 - mean) / std`` that an array of pixels would go through, so a look-up gives bit-identical values."""
    levels = np.arange(256, dtype=np.float32)[:, None] / 255.0
    table = (levels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(table.T)


def to_array(
    img: Image.Image, size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]
) -> np.ndarray:
    """RGB image -> float32 [3, H, W], resized to ``size`` (H, W) (aspect not kept, as in training) and normalised.

    Normalisation is a per-channel table look-up straight into the [3, H, W] layout: the same values as converting,
    scaling and transposing the whole array, in one pass instead of four (``bench/served_path_profile.py``)."""
    resized = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    pixels = np.asarray(resized)  # [H, W, 3] uint8
    table = _normalise_table(tuple(mean), tuple(std))
    out = np.empty((3, size[0], size[1]), dtype=np.float32)
    for ch in range(3):
        np.take(table[ch], pixels[:, :, ch], out=out[ch])
    return out
