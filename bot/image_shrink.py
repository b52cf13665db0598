"""Shrinking an image before it is queued: the worker gets only the pixels its models read.

The largest copy of an image any model reads has its long side at :data:`captionbot.formats.MODEL_MAX_SIDE`
(the text reader's; the caption encoder reads 224 × 224). A phone photo (4032 × 3024, 3–6 MB) is decoded here at
a reduced JPEG scale, turned upright by its EXIF orientation, resized to that long side and re-encoded, so the job
carries a few hundred kB instead of megabytes (and no EXIF: no GPS position leaves the bot). An animation is cut
to its first frame, the one the worker captions. Nothing is ever enlarged, and an image already within the size is
sent as it came. Re-encoding: JPEG (quality 90) for photos from JPEG or WebP, PNG (lossless, so text stays sharp)
for PNG and GIF sources and anything with transparency. When the copy would not be smaller, the original is sent.
Pillow only; no model code.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass

from captionbot.bot.image_check import probe_image
from PIL import Image, ImageOps

from captionbot.formats import MODEL_MAX_SIDE

log = logging.getLogger(__name__)
JPEG_QUALITY = 90
LOSSY_SOURCES = ("JPEG", "MPO", "WEBP")
SIMPLE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr")  # others (16-bit ...) go as they came


@dataclass(frozen=True)
class Shrunk:
    data: bytes
    width: int  # of the image sent (upright when it was re-encoded)
    height: int
    reencoded: bool


def shrink_for_models(data: bytes, max_side: int = MODEL_MAX_SIDE) -> Shrunk:
    """``data`` with its long side at most ``max_side`` and only its first frame, re-encoded, when that makes it
    smaller; else ``data`` itself. Expects an image :func:`probe_image` accepted; a file Pillow cannot re-encode
    is sent as it came (the worker decides about it)."""
    with Image.open(io.BytesIO(data)) as img:
        fmt, (w, h) = str(img.format), img.size
        animated = getattr(img, "n_frames", 1) > 1
        if (max(w, h) <= max_side and not animated) or img.mode not in SIMPLE_MODES:
            return Shrunk(data, w, h, reencoded=False)
        try:
            out = _reencode(img, fmt, max_side)
        except Exception as exc:  # an odd file: the worker's own decoder gets the original
            log.info("image not shrunk (%s: %s); sent as it came", type(exc).__name__, exc)
            return Shrunk(data, w, h, reencoded=False)
    if len(out.data) >= len(data):
        return Shrunk(data, w, h, reencoded=False)
    log.debug("image %dx%d %s %d bytes -> %dx%d %d bytes", w, h, fmt, len(data), out.width, out.height, len(out.data))
    return out


def prepare_for_queue(data: bytes, max_pixels: int, max_side: int = MODEL_MAX_SIDE) -> bytes:
    """The bot's last step before queueing: check the file (:func:`probe_image`, raises ``ImageRejected``), then
    :func:`shrink_for_models`. CPU-bound: run it in a thread."""
    probe_image(data, max_pixels)
    return shrink_for_models(data, max_side).data


def _reencode(img: Image.Image, fmt: str, max_side: int) -> Shrunk:
    w, h = img.size
    if fmt in ("JPEG", "MPO"):
        scale = min(1.0, max_side / max(w, h))
        img.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))  # 1/2, 1/4, 1/8 scale decode
    img.load()  # an animation: its first frame
    frame: Image.Image = img
    with contextlib.suppress(Exception):  # a broken EXIF block: keep the pixels as stored, as the worker would
        frame = ImageOps.exif_transpose(img)
    alpha = frame.mode in ("LA", "PA", "RGBA") or "transparency" in frame.info
    lossless = alpha or fmt not in LOSSY_SOURCES
    frame = frame.convert("RGBA" if alpha else "RGB")
    frame.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # keeps the aspect ratio, never enlarges
    buf = io.BytesIO()
    if lossless:
        frame.save(buf, "PNG")
    else:
        frame.save(buf, "JPEG", quality=JPEG_QUALITY)
    return Shrunk(buf.getvalue(), frame.width, frame.height, reencoded=True)
