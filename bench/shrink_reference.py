"""The bot's check + shrink before queueing as shipped before decode-once (commit 9fea3f2: ``bot/image_check.py``'s
``probe_image`` then ``bot/image_shrink.py``'s ``shrink_for_models``), kept verbatim as the "before" of
``bench/bot_shrink_cost.py`` and ``bench/bot_shrink_quality.py`` and the reference of
``tests/bot/test_queue_shrink_same_bytes.py``. Not used by the bot.
"""

from __future__ import annotations

import contextlib
import io

from PIL import Image, ImageOps

from captionbot.formats import CHAT_PILLOW_FORMATS, MODEL_MAX_SIDE, ErrorCode, ImageRejected

JPEG_QUALITY = 90
LOSSY_SOURCES = ("JPEG", "MPO", "WEBP")
SIMPLE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr")


def probe_image(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """Format, size and integrity of ``data``; raises :class:`ImageRejected` with the reason. CPU-bound: run it
    in a thread for large files."""
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageRejected(ErrorCode.TOO_MANY_PIXELS, str(exc)) from exc
    except Exception as exc:
        raise ImageRejected(ErrorCode.NOT_AN_IMAGE, f"{type(exc).__name__}: {exc}") from exc
    with img:
        info = (str(img.format), *img.size)
        if info[0] not in CHAT_PILLOW_FORMATS:
            raise ImageRejected(ErrorCode.UNSUPPORTED_FORMAT, info[0])
        if info[1] * info[2] > max_pixels:
            raise ImageRejected(ErrorCode.TOO_MANY_PIXELS, f"{info[1]}x{info[2]} > {max_pixels} pixels")
        try:
            if info[0] == "PNG":
                img.verify()
            else:
                if info[0] in ("JPEG", "MPO"):
                    img.draft("RGB", (max(1, info[1] // 8), max(1, info[2] // 8)))
                img.load()
        except Exception as exc:
            raise ImageRejected(ErrorCode.TRUNCATED, f"{type(exc).__name__}: {exc}") from exc
    return info


def shrink_for_models(data: bytes, max_side: int = MODEL_MAX_SIDE) -> bytes:
    """``data`` with its long side at most ``max_side`` and only its first frame, re-encoded, when that makes it
    smaller; else ``data`` itself. Expects an image :func:`probe_image` accepted; a file Pillow cannot re-encode
    is sent as it came (the worker decides about it)."""
    with Image.open(io.BytesIO(data)) as img:
        fmt, (w, h) = str(img.format), img.size
        animated = getattr(img, "n_frames", 1) > 1
        if (max(w, h) <= max_side and not animated) or img.mode not in SIMPLE_MODES:
            return data
        try:
            out = _reencode(img, fmt, max_side)
        except Exception:  # an odd file: the worker's own decoder gets the original
            return data
    if len(out) >= len(data):
        return data
    return out


def prepare_for_queue(data: bytes, max_pixels: int, max_side: int = MODEL_MAX_SIDE) -> bytes:
    """The bot's last step before queueing: check the file (:func:`probe_image`, raises ``ImageRejected``), then
    :func:`shrink_for_models`. CPU-bound: run it in a thread."""
    probe_image(data, max_pixels)
    return shrink_for_models(data, max_side)


def _reencode(img: Image.Image, fmt: str, max_side: int) -> bytes:
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
    return buf.getvalue()
