"""Perceptual hashes of images, to recognise the same picture posted again after re-encoding or resizing.

pHash (``imagehash.phash``: the low frequencies of a 32×32 greyscale DCT, 64 bits) after applying the EXIF
orientation and shrinking the picture to at most 256 px (the DCT then works on a small picture). Two images
are "the same" when their hashes differ in at most :data:`MATCH_DISTANCE` bits; that bar was chosen on one half of
400 Flickr8k photos and confirmed on the other half (``bench/phash_threshold.py``, figures in docs/bot.md):
re-encoded and resized copies stay within it, different photos do not come near it.
"""

from __future__ import annotations

import io
import re

HASH_HEX = 16  # 64 bits as hex
MATCH_DISTANCE = 6  # bits; see the module docstring
_HEX = re.compile(r"^[0-9a-f]{16}$")


def perceptual_hash(data: bytes) -> str:
    """The image's 64-bit pHash as 16 lowercase hex digits. Raises what PIL raises for data that is no image.
    (imagehash and PIL are imported here, so the hash arithmetic below costs nothing to import.)"""
    import imagehash
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        img.draft("L", (256, 256))  # JPEG: decode at a reduced size, far faster and the same low frequencies
        img.thumbnail((256, 256), reducing_gap=2.0)  # any format: box-reduce first, so a big PNG costs little
        return str(imagehash.phash(ImageOps.exif_transpose(img).convert("L")))


def is_hash(value: object) -> bool:
    """A well-formed hash as :func:`perceptual_hash` writes it (anything read back from Redis is checked)."""
    return isinstance(value, str) and bool(_HEX.match(value))


def distance(a: str, b: str) -> int:
    """How many of the 64 bits differ."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def same_image(a: str, b: str, max_distance: int = MATCH_DISTANCE) -> bool:
    return distance(a, b) <= max_distance
