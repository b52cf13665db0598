"""Corrections as a captioning dataset: what ``captionbot feedback export`` writes, in the COCO caption format that
``captionbot train --coco DIR/captions.json DIR/images`` reads (``training/data.py``, ``read_coco``).

    DIR/captions.json   {"info": {...}, "images": [{"id", "file_name", "phash", ...}],
                         "annotations": [{"id", "image_id", "caption", "model_caption", "shown"}]}
    DIR/images/<phash>.jpg   only for corrections made while the server kept images (``/feedback images``)
    DIR/README.txt      what is in it, in words

``caption`` is the person's description as a training caption: any "Text in image: …" part the bot had added (and
the person left in) is cut off and whitespace collapsed; ``shown`` is what the description said, verbatim.
Without images the file still lists every correction with its hash (``file_name`` names no file), and the training
reader skips those entries with a warning: captions and hashes only, as ``info.images_included`` says.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from captionbot.bot.corrections import FeedbackStore

CAPTIONS_FILE = "captions.json"
IMAGES_DIR = "images"
TEXT_IN_IMAGE = "Text in image:"


@dataclass
class ExportSummary:
    corrections: int
    images: int
    keep_images: bool  # the server's setting now

    def describe(self, out: Path) -> str:
        lines = [f"{self.corrections} correction(s) written to {out / CAPTIONS_FILE}."]
        if self.images:
            lines.append(f"{self.images} with their image in {out / IMAGES_DIR}: train with "
                         f"`captionbot train --coco {out / CAPTIONS_FILE} {out / IMAGES_DIR} ...`.")
        missing = self.corrections - self.images
        if missing:
            why = ("they were made before the server chose to keep images" if self.keep_images else
                   "the server has not chosen to keep images (/feedback images keep:True)")
            lines.append(f"{missing} correction(s) have captions and image hashes only ({why}); the training "
                         f"reader skips entries without an image.")
        return "\n".join(lines)


def training_caption(text: str) -> str:
    """A person's description as a training caption: one line, without the "Text in image: …" part."""
    return " ".join(text.split(TEXT_IN_IMAGE, 1)[0].split())


async def export_dataset(store: FeedbackStore, guild_id: str, out: Path) -> ExportSummary:
    """Write ``guild_id``'s corrections into ``out`` (created; an existing captions.json is replaced)."""
    fixes = await store.corrections(guild_id)
    keep = await store.keeps_images(guild_id)
    out.mkdir(parents=True, exist_ok=True)
    (out / IMAGES_DIR).mkdir(exist_ok=True)
    images, annotations, written = [], [], 0
    for n, fix in enumerate(fixes, 1):
        caption = training_caption(fix.text)
        if not caption:
            continue
        name = f"{fix.hash}.jpg"
        data = await store.image(guild_id, fix.hash) if fix.has_image else None
        if data:
            (out / IMAGES_DIR / name).write_bytes(data)
            written += 1
        images.append({"id": n, "file_name": name, "phash": fix.hash, "image_included": bool(data),
                       "corrected_at": fix.at})
        annotations.append({"id": n, "image_id": n, "caption": caption, "model_caption": fix.model_text,
                            "shown": fix.text})
    info = {"description": f"captionbot corrections of guild {guild_id}", "guild_id": guild_id,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "images_included": written,
            "captions_only": len(images) - written, "format": "COCO captions (captionbot train --coco)"}
    doc = {"info": info, "images": images, "annotations": annotations}
    tmp = out / (CAPTIONS_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(out / CAPTIONS_FILE)
    summary = ExportSummary(len(images), written, keep)
    (out / "README.txt").write_text(
        f"captionbot feedback export, guild {guild_id}, {info['exported_at']}\n\n{summary.describe(out)}\n\n"
        "captions.json is in the COCO caption format; each image entry carries its 64-bit perceptual hash (phash).\n"
        "'caption' is the person's words as a training caption; 'model_caption' what the bot had said.\n",
        encoding="utf-8")
    return summary
