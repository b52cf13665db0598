"""The alt text a heatmap PNG carries, read back by whoever posts it.

The worker writes where each content word was found into the heatmap PNG's ``Description`` text chunk
(``inference/heatmap.py``); the bot reads it here. This module lives in ``captionbot/`` because the bot's image
ships neither ``inference/`` nor onnxruntime (tests/bot/test_no_torch.py).
"""

from __future__ import annotations

import io
import logging

from PIL import Image

log = logging.getLogger(__name__)

DESCRIPTION_KEY = "Description"  # the PNG text chunk that holds the heatmap's alt text
MAX_DESCRIPTION = 1000  # characters (Discord allows 1,024 for an attachment's description)


def heatmap_description(png: bytes) -> str:
    """The alt text a heatmap PNG carries ("dog: lower left; ball: centre"); "" when it has none or is not a PNG
    this module wrote. Only printable text, at most :data:`MAX_DESCRIPTION` characters: the bytes may come from
    another process."""
    try:
        with Image.open(io.BytesIO(png)) as im:
            text = getattr(im, "text", {}).get(DESCRIPTION_KEY, "")
    except (OSError, ValueError, SyntaxError) as exc:
        log.info("heatmap PNG unreadable, its alt text left out: %s", exc)
        return ""
    if not isinstance(text, str):
        return ""
    return "".join(ch for ch in text if ch.isprintable())[:MAX_DESCRIPTION]
