"""Test and benchmark stand-ins for the model: same interface as ``captionbot.inference.captioner.Captioner``, no model.

``NullCaptioner`` answers instantly (or after a set delay) with a caption derived from the image bytes, so the
queue and worker can be tested and their overhead measured without the model's cost. It refuses bytes that do not
start like an image format the bot accepts (``captionbot.formats.CHAT_FORMATS``), as the real model refuses
non-images. ``PoisonCaptioner`` raises for any image that contains the marker ``POISON_MARK``, like a model that
crashes on one input. ``CrashCaptioner`` kills its own process (SIGKILL) on an image with ``CRASH_MARK``, like a
native library that segfaults on one input. None is ever a default.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from captionbot.formats import CHAT_FORMATS, ErrorCode, ImageRejected

POISON_MARK = b"<poison>"
CRASH_MARK = b"<crash>"
IMAGE_MAGIC = tuple(magic for f in CHAT_FORMATS for magic in f.magic)
# The smallest valid PNG (1x1 transparent): what the null model returns as a "heatmap".
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


@dataclass
class NullOutput:
    caption: str
    words: list[str]
    score: float
    heatmap_png: bytes | None = None
    variants: list[tuple[str, float]] = field(default_factory=list)  # the null model has one caption: itself


def null_caption(image: bytes) -> str:
    """The caption the null model gives an image: a function of its bytes, so tests can check who got what."""
    return f"null caption {hashlib.sha1(image).hexdigest()[:10]}"


class NullCaptioner:
    """A model that does no work. ``delay_s`` is slept once per batch (to hold a batch in flight in tests)."""

    model_version = "null-0"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.batches: list[int] = []  # size of each batch seen (tests read this)

    def caption_images(
        self, images: Sequence[bytes], beam_size: int = 3, heatmap: bool = False, variants: int = 1
    ) -> list[NullOutput | ImageRejected]:
        self.batches.append(len(images))
        if self.delay_s:
            time.sleep(self.delay_s)
        return [self._one(img, heatmap, variants) for img in images]

    def _one(self, image: bytes, heatmap: bool, variants: int = 1) -> NullOutput | ImageRejected:
        if not image.startswith(IMAGE_MAGIC):
            return ImageRejected(ErrorCode.NOT_AN_IMAGE, "null model: no image signature")
        caption = null_caption(image)
        return NullOutput(caption, caption.split(), -1.0, TINY_PNG if heatmap else None,
                          [(caption, 1.0)] if variants > 1 else [])


class PoisonCaptioner(NullCaptioner):
    """The null model, except that a batch holding an image with ``POISON_MARK`` raises (as a crashing model)."""

    model_version = "poison-0"

    def caption_images(
        self, images: Sequence[bytes], beam_size: int = 3, heatmap: bool = False, variants: int = 1
    ) -> list[NullOutput | ImageRejected]:
        if any(POISON_MARK in img for img in images):
            self.batches.append(len(images))
            raise RuntimeError("poison image: the model crashed on it")
        return super().caption_images(images, beam_size, heatmap, variants)


class CrashCaptioner(NullCaptioner):
    """The null model, except that a batch holding an image with ``CRASH_MARK`` kills the process at once."""

    model_version = "crash-0"

    def caption_images(
        self, images: Sequence[bytes], beam_size: int = 3, heatmap: bool = False, variants: int = 1
    ) -> list[NullOutput | ImageRejected]:
        if any(CRASH_MARK in img for img in images):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().caption_images(images, beam_size, heatmap, variants)
