"""Checks on an image before it is queued: metadata first (no download), then the file's header and integrity.

Pillow's ``Image.open`` is lazy (it reads the header only), so format and pixel count are known before any
decoding; a decompression bomb is refused there (:func:`open_image`). Integrity (a truncated or corrupt file) needs
the data read through (:func:`check_integrity`): PNG by ``verify()`` (chunk CRCs up to IEND), JPEG by a
reduced-scale decode (draft mode reads the whole entropy-coded stream at 1/8 of the pixels, or at the scale the
caller is about to use), GIF and WebP by decoding the first frame. A caller that decodes the image anyway (the
shrink before queueing, ``bot/image_shrink.py``) does that decode inside :func:`rejected_if_unreadable`, so it
doubles as the integrity check and the file is decoded once. The accepted types are the chat formats of
:data:`captionbot.formats.IMAGE_FORMATS`.
"""

from __future__ import annotations

import io
import mimetypes
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from captionbot.formats import CHAT_CONTENT_TYPES, CHAT_PILLOW_FORMATS, ErrorCode, ImageRejected

JPEG_FORMATS = ("JPEG", "MPO")  # a phone's multi-picture JPEG opens as "MPO"


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def check_metadata(content_type: str | None, size: int, max_bytes: int, filename: str = "") -> None:
    """Refuse from the attachment's metadata alone: declared type (else the file name's) and size."""
    ctype = (content_type or mimetypes.guess_type(filename)[0] or "").split(";")[0].strip().lower()
    if not ctype.startswith("image/"):
        raise ImageRejected(ErrorCode.NOT_AN_IMAGE, f"content type {content_type!r}")
    if ctype not in CHAT_CONTENT_TYPES:
        raise ImageRejected(ErrorCode.UNSUPPORTED_FORMAT, f"content type {ctype}")
    if size > max_bytes:
        raise ImageRejected(ErrorCode.TOO_LARGE, f"{size} bytes > {max_bytes}")


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """``data`` opened lazily (header only, nothing decoded) once its format and pixel count pass; raises
    :class:`ImageRejected` with the reason. The caller closes the image (``with open_image(...) as img``)."""
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageRejected(ErrorCode.TOO_MANY_PIXELS, str(exc)) from exc
    except UnidentifiedImageError as exc:  # no decoder recognises the bytes
        raise ImageRejected(ErrorCode.NOT_AN_IMAGE, f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # recognised, but the header is cut off or broken (a WebP's decoder opens it there)
        raise ImageRejected(ErrorCode.TRUNCATED, f"{type(exc).__name__}: {exc}") from exc
    fmt, (width, height) = str(img.format), img.size
    if fmt not in CHAT_PILLOW_FORMATS:
        img.close()
        raise ImageRejected(ErrorCode.UNSUPPORTED_FORMAT, fmt)
    if width * height > max_pixels:
        img.close()
        raise ImageRejected(ErrorCode.TOO_MANY_PIXELS, f"{width}x{height} > {max_pixels} pixels")
    return img


@contextmanager
def rejected_if_unreadable() -> Iterator[None]:
    """Around a decode that checks integrity: any failure inside becomes "truncated or corrupt"."""
    try:
        yield
    except ImageRejected:
        raise
    except Exception as exc:
        raise ImageRejected(ErrorCode.TRUNCATED, f"{type(exc).__name__}: {exc}") from exc


def check_integrity(img: Image.Image, draft_size: tuple[int, int] | None = None) -> None:
    """Read ``img`` (fresh from :func:`open_image`) through, raising ``ImageRejected(TRUNCATED)`` if it is cut off
    or corrupt. PNG: ``verify()``, after which ``img`` can no longer be loaded (open the data again). JPEG: decoded
    at the draft scale covering ``draft_size`` (default 1/8 of each side), so a caller that needs the pixels
    anyway passes its own size and keeps the decoded ``img``. Others: the first frame decoded."""
    with rejected_if_unreadable():
        if img.format == "PNG":
            img.verify()
            return
        if img.format in JPEG_FORMATS:
            w, h = img.size
            img.draft("RGB", draft_size or (max(1, w // 8), max(1, h // 8)))
        img.load()


def probe_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Format, size and integrity of ``data``; raises :class:`ImageRejected` with the reason. CPU-bound: run it
    in a thread for large files."""
    with open_image(data, max_pixels) as img:
        info = ImageInfo(str(img.format), *img.size)
        check_integrity(img)
    return info
