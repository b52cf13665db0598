"""Image–caption data: readers for Flickr8k, COCO caption JSON and Karpathy splits; tokens and vocabulary.

Every reader yields :class:`CaptionedImage` (image path, its reference captions, its split). Caption files often
cover more images than a folder holds: those images are skipped and counted in the log, never a crash.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from captionbot.formats import SPECIAL_IDS, SPECIAL_TOKENS

log = logging.getLogger(__name__)

# ids of SPECIAL_TOKENS, the same in every vocabulary (formats.SPECIAL_IDS is their one definition)
PAD, START, END, UNK = SPECIAL_IDS.pad, SPECIAL_IDS.start, SPECIAL_IDS.end, SPECIAL_IDS.unk


@dataclass
class CaptionedImage:
    path: Path
    captions: list[str]
    split: str  # "train", "dev"/"val", "test", or "extra" (in no split)

    @property
    def image_id(self) -> str:
        return self.path.name


def _keep_present(items: list[CaptionedImage], source: str) -> list[CaptionedImage]:
    present = [it for it in items if it.path.is_file()]
    missing = len(items) - len(present)
    if missing:
        log.warning("%s: %d of %d captioned images are not in the image folder; skipped", source, missing, len(items))
    return present


def read_flickr8k(root: Path) -> list[CaptionedImage]:
    """``root`` holds Flickr8k.token.txt, Flickr_8k.{train,dev}Images.txt and images/ (or Flicker8k_Dataset/)."""
    root = Path(root)
    image_dir = next((root / d for d in ("images", "Flicker8k_Dataset", "Flickr8k_Dataset") if (root / d).is_dir()),
                     root / "images")
    split_of: dict[str, str] = {}
    for split, fname in (("train", "Flickr_8k.trainImages.txt"), ("dev", "Flickr_8k.devImages.txt"),
                         ("test", "Flickr_8k.testImages.txt")):
        path = root / fname
        if path.is_file():
            for line in path.read_text().split():
                split_of[line.strip()] = split
    captions: dict[str, list[str]] = {}
    for line in (root / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        if "\t" not in line:
            continue
        key, text = line.split("\t", 1)
        captions.setdefault(key.split("#")[0], []).append(text.strip())
    items = [CaptionedImage(image_dir / name, caps, split_of.get(name, "extra")) for name, caps in captions.items()]
    return _keep_present(items, f"flickr8k {root}")


def read_coco(captions_json: Path, image_dir: Path, split: str = "train") -> list[CaptionedImage]:
    """Official COCO caption format: ``images`` (id, file_name) and ``annotations`` (image_id, caption)."""
    data = json.loads(Path(captions_json).read_text(encoding="utf-8"))
    names = {img["id"]: img["file_name"] for img in data["images"]}
    captions: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        captions.setdefault(ann["image_id"], []).append(ann["caption"].strip())
    items = [CaptionedImage(Path(image_dir) / names[i], caps, split) for i, caps in captions.items() if i in names]
    return _keep_present(items, f"coco {captions_json}")


def read_karpathy(dataset_json: Path, image_dir: Path) -> list[CaptionedImage]:
    """Karpathy's ``dataset_*.json``: images with filename, optional filepath, split, sentences[].raw."""
    data = json.loads(Path(dataset_json).read_text(encoding="utf-8"))
    items = []
    for img in data["images"]:
        folder = Path(image_dir) / img.get("filepath", "")
        split = {"restval": "train", "val": "dev"}.get(img["split"], img["split"])
        items.append(CaptionedImage(folder / img["filename"], [s["raw"].strip() for s in img["sentences"]], split))
    return _keep_present(items, f"karpathy {dataset_json}")


_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def tokenize(text: str) -> list[str]:
    """Lowercase, drop punctuation (keep apostrophes inside words), split on whitespace."""
    text = _NON_WORD.sub(" ", text.lower().replace("-", " "))
    return [w.strip("'") for w in text.split() if w.strip("'")]


@dataclass
class Vocab:
    """Word <-> id. Ids 0..3 are ``<pad> <start> <end> <unk>``; words seen fewer than ``min_count`` times are <unk>."""

    itos: list[str]
    stoi: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        if tuple(self.itos[:4]) != SPECIAL_TOKENS:
            raise ValueError(f"vocab must start with {SPECIAL_TOKENS}")
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], min_count: int = 5) -> Vocab:
        counts = Counter(w for tokens in token_lists for w in tokens)
        words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(list(SPECIAL_TOKENS) + words)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str], max_len: int) -> list[int]:
        """``<start> w1 … wn <end>`` with n ≤ max_len."""
        return [START] + [self.stoi.get(w, UNK) for w in tokens[:max_len]] + [END]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words up to the first ``<end>``, without special tokens."""
        words = []
        for i in ids:
            i = int(i)
            if i == END:
                break
            if i > UNK:
                words.append(self.itos[i])
        return words

    def to_dict(self) -> dict[str, list[str]]:
        return {"itos": self.itos}

    @classmethod
    def from_dict(cls, d: dict[str, list[str]]) -> Vocab:
        return cls(list(d["itos"]))
