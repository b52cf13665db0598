"""Checks on an image before it is queued: metadata first (no download), then the file's header and integrity.

Pillow's ``Image.open`` is lazy (it reads the header only), so format and pixel count are known before any
decoding; a decompression bomb is refused there. Integrity (a truncated or corrupt file) needs the data read
through: PNG by ``verify()`` (chunk CRCs up to IEND), JPEG by a reduced-scale decode (draft mode reads the whole
entropy-coded stream at 1/8 of the pixels), GIF and WebP by decoding the first frame. The accepted types are the
chat formats of :data:`captionbot.formats.IMAGE_FORMATS`.
"""

from __future__ import annotations

import io
import mimetypes
from dataclasses import dataclass

from PIL import Image

from captionbot.formats import CHAT_CONTENT_TYPES, CHAT_PILLOW_FORMATS, ErrorCode, ImageRejected


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


def probe_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Format, size and integrity of ``data``; raises :class:`ImageRejected` with the reason. CPU-bound: run it
    in a thread for large files."""
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageRejected(ErrorCode.TOO_MANY_PIXELS, str(exc)) from exc
    except Exception as exc:
        raise ImageRejected(ErrorCode.NOT_AN_IMAGE, f"{type(exc).__name__}: {exc}") from exc
    with img:
        info = ImageInfo(str(img.format), *img.size)
        if info.format not in CHAT_PILLOW_FORMATS:
            raise ImageRejected(ErrorCode.UNSUPPORTED_FORMAT, info.format)
        if info.width * info.height > max_pixels:
            raise ImageRejected(ErrorCode.TOO_MANY_PIXELS, f"{info.width}x{info.height} > {max_pixels} pixels")
        try:
            if info.format == "PNG":
                img.verify()
            else:
                if info.format in ("JPEG", "MPO"):
                    img.draft("RGB", (max(1, info.width // 8), max(1, info.height // 8)))
                img.load()
        except Exception as exc:
            raise ImageRejected(ErrorCode.TRUNCATED, f"{type(exc).__name__}: {exc}") from exc
    return info
