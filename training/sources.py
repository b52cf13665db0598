"""Data sources named on the command line (``--flickr8k DIR``, ``--coco JSON IMGDIR``, ``--karpathy JSON IMGDIR``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from captionbot.training.data import CaptionedImage, read_coco, read_flickr8k, read_karpathy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSource:
    kind: str  # "flickr8k" | "coco" | "karpathy"
    paths: tuple[Path, ...]  # flickr8k: (root,); coco/karpathy: (captions json, image dir)

    def read(self) -> list[CaptionedImage]:
        if self.kind == "flickr8k":
            return read_flickr8k(self.paths[0])
        if self.kind == "coco":
            return read_coco(self.paths[0], self.paths[1], split="train")
        if self.kind == "karpathy":
            return read_karpathy(self.paths[0], self.paths[1])
        raise ValueError(f"unknown data source kind {self.kind!r}")


def read_sources(sources: list[DataSource]) -> list[CaptionedImage]:
    """All images of all sources; an image id seen twice keeps its first source (with a warning)."""
    seen: dict[str, CaptionedImage] = {}
    dupes = 0
    for src in sources:
        items = src.read()
        log.info("%s %s: %d images, %d captions", src.kind, src.paths[0], len(items),
                 sum(len(i.captions) for i in items))
        for item in items:
            if item.image_id in seen:
                dupes += 1
                continue
            seen[item.image_id] = item
    if dupes:
        log.warning("%d images appear in more than one source (same file name); kept the first", dupes)
    return list(seen.values())
