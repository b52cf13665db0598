"""Shrinking an image before it is queued: the worker gets only the pixels its models read.

The largest copy of an image any model reads has its long side at :data:`captionbot.formats.MODEL_MAX_SIDE`
(the text reader's; the caption encoder reads 224 × 224). A phone photo (4032 × 3024, 3–6 MB) is decoded here at
a reduced JPEG scale, turned upright by its EXIF orientation, resized to that long side and re-encoded, so the job
carries a few hundred kB instead of megabytes (and no EXIF: no GPS position leaves the bot). An animation is cut
to its first frame, the one the worker captions. Nothing is ever enlarged, and an image already within the size is
sent as it came. Re-encoding: JPEG (quality 90) for photos from JPEG or WebP, PNG (lossless, so text stays sharp;
a faster zlib level for busy pictures, see :data:`PNG_FAST_LEVEL`) for PNG and GIF sources and anything with
transparency. When the copy would
not be smaller, the original is sent, and the encoder is stopped as soon as its output reaches the original's size.

:func:`prepare_for_queue` decodes a file once: the shrink's decode (JPEG at its reduced scale, a GIF's or WebP's
first frame) is also the integrity check of ``bot/image_check.py``, with the same refusals. Pillow only; no model
code.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from captionbot.bot.image_check import JPEG_FORMATS, check_integrity, open_image
from PIL import Image, ImageOps

from captionbot.formats import MODEL_MAX_SIDE

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

log = logging.getLogger(__name__)
JPEG_QUALITY = 90
# zlib levels of a PNG copy (its pixels are the same at any level). A busy picture (a screenshot with a photo in it:
# the file takes at least BUSY_BYTES_PER_PIXEL) is written at level 3, which costs it about 40 % of the default
# level 6's time for 2-4 % more bytes; a flat one (text, a chart, a GIF) at 6, where 3 saves little time and can
# write 1.3-2.6x the bytes. A level-3 copy that does not come out smaller than the file is written again at 6, so
# the choice between the copy and the file is the one level 6 makes (bench/bot_shrink_cost.py, docs/bot.md).
PNG_FAST_LEVEL = 3
PNG_LEVEL = 6  # zlib's default, Pillow's when none is given
BUSY_BYTES_PER_PIXEL = 0.25
RESAMPLE = Image.Resampling.LANCZOS  # the resize filter (bench/bot_shrink_quality.py compares others)
LOSSY_SOURCES = ("JPEG", "MPO", "WEBP")
SIMPLE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr")  # others (16-bit ...) go as they came


@dataclass(frozen=True)
class Shrunk:
    data: bytes
    width: int  # of the image sent (upright when it was re-encoded)
    height: int
    reencoded: bool


class _NotSmaller(Exception):
    """The copy being written has reached the original's size: it will not be sent."""


class _CappedBuffer(io.BytesIO):
    """An in-memory file that refuses to grow to ``limit`` bytes (raises :class:`_NotSmaller`)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, b: ReadableBuffer, /) -> int:
        if self.tell() + memoryview(b).nbytes >= self.limit:
            raise _NotSmaller
        return super().write(b)


def shrink_for_models(data: bytes, max_side: int = MODEL_MAX_SIDE, *,
                      resample: Image.Resampling = RESAMPLE) -> Shrunk:
    """``data`` with its long side at most ``max_side`` and only its first frame, re-encoded, when that makes it
    smaller; else ``data`` itself. Expects an image :func:`~captionbot.bot.image_check.probe_image` accepted; a
    file Pillow cannot re-encode is sent as it came (the worker decides about it)."""
    with Image.open(io.BytesIO(data)) as img:
        return _shrink(data, img, max_side, resample, check=False)


def prepare_for_queue(data: bytes, max_pixels: int, max_side: int = MODEL_MAX_SIDE, *,
                      resample: Image.Resampling = RESAMPLE) -> bytes:
    """The bot's last step before queueing: the checks of ``probe_image`` (header, pixel count, integrity; raises
    ``ImageRejected``) and :func:`shrink_for_models`, decoding the file once. CPU-bound: run it in a thread."""
    with open_image(data, max_pixels) as img:
        if img.format != "PNG":
            return _shrink(data, img, max_side, resample, check=True).data
        check_integrity(img)  # PNG: verify() reads every chunk's CRC, and leaves img unusable
    return shrink_for_models(data, max_side, resample=resample).data


def _shrink(data: bytes, img: Image.Image, max_side: int, resample: Image.Resampling, check: bool) -> Shrunk:
    """:func:`shrink_for_models` of the opened ``img``; with ``check``, its decode is the integrity check."""
    fmt, (w, h) = str(img.format), img.size
    jpeg = fmt in JPEG_FORMATS
    try:
        animated = getattr(img, "n_frames", 1) > 1  # a GIF: its frames are walked, not decoded
    except Exception:
        if check and not jpeg:
            check_integrity(img)  # a broken first frame is refused, as when it was checked first
        raise
    if check and not jpeg:
        check_integrity(img)  # GIF, WebP: the first frame, which the copy is made from (decoded once, here)
    if (max(w, h) <= max_side and not animated) or img.mode not in SIMPLE_MODES:
        if check and jpeg:
            check_integrity(img)  # sent as it came: the 1/8-scale decode only checks it
        return Shrunk(data, w, h, reencoded=False)
    if jpeg:
        scale = min(1.0, max_side / max(w, h))
        size = (max(1, int(w * scale)), max(1, int(h * scale)))  # decoded at 1/2, 1/4 or 1/8 scale if that covers it
        if check:
            check_integrity(img, size)  # the decode the copy is made from checks the whole stream
        else:
            img.draft("RGB", size)
    try:
        out = _reencode(img, fmt, max_side, resample, limit=len(data))
    except _NotSmaller:
        return Shrunk(data, w, h, reencoded=False)
    except Exception as exc:  # an odd file: the worker's own decoder gets the original
        log.info("image not shrunk (%s: %s); sent as it came", type(exc).__name__, exc)
        return Shrunk(data, w, h, reencoded=False)
    log.debug("image %dx%d %s %d bytes -> %dx%d %d bytes", w, h, fmt, len(data), out.width, out.height, len(out.data))
    return out


def _reencode(img: Image.Image, fmt: str, max_side: int, resample: Image.Resampling, limit: int) -> Shrunk:
    """The copy; raises :class:`_NotSmaller` when it would take ``limit`` bytes (the file's size) or more."""
    source_pixels = img.width * img.height
    img.load()  # an animation: its first frame (a JPEG at its draft scale: already loaded when checked)
    with contextlib.suppress(Exception):  # a broken EXIF block: keep the pixels as stored, as the worker would
        ImageOps.exif_transpose(img, in_place=True)  # no copy of the pixels when the picture is already upright
    alpha = img.mode in ("LA", "PA", "RGBA") or "transparency" in img.info
    lossless = alpha or fmt not in LOSSY_SOURCES
    mode = "RGBA" if alpha else "RGB"
    frame = img if img.mode == mode else img.convert(mode)  # converted in place of a copy only where needed
    frame.thumbnail((max_side, max_side), resample)  # keeps the aspect ratio, never enlarges
    if not lossless:
        buf = _CappedBuffer(limit)
        frame.save(buf, "JPEG", quality=JPEG_QUALITY)
        return Shrunk(buf.getvalue(), frame.width, frame.height, reencoded=True)
    busy = limit >= BUSY_BYTES_PER_PIXEL * source_pixels
    for level in (PNG_FAST_LEVEL, PNG_LEVEL) if busy else (PNG_LEVEL,):
        buf = _CappedBuffer(limit)
        try:
            frame.save(buf, "PNG", compress_level=level)
            break
        except _NotSmaller:
            if level == PNG_LEVEL:
                raise
    return Shrunk(buf.getvalue(), frame.width, frame.height, reencoded=True)
