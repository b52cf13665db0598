"""The bundle's object knowledge: ImageNet class probabilities -> caption words (``labels.json``, see
``export/label_table.py``). Probabilities of classes that share a word add up (118 dog breeds -> "dog")."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# words a caption may use for a label word ("dog" is also said "puppy"); the label word itself and its plural count
SYNONYMS: dict[str, tuple[str, ...]] = {
    "dog": ("puppy", "dogs", "puppies"),
    "cat": ("kitten", "kitty", "cats"),
    "airplane": ("plane", "jet", "airplanes", "planes"),
    "bike": ("bicycle", "bikes"),
    "bicycle": ("bike",),
    "tv": ("television",),
    "cup of coffee": ("coffee", "cup", "mug"),
    "coffee mug": ("coffee", "mug", "cup"),
    "cup": ("mug", "coffee"),
    "car": ("cars", "vehicle"),
    "truck": ("trucks",),
    "boat": ("boats", "ship"),
    "sailboat": ("boat", "sailboats"),
    "ship": ("boat",),
    "bird": ("birds",),
    "horse": ("horses", "pony"),
    "sheep": ("lamb",),
    "cow": ("cows", "cattle", "bull"),
    "plate of food": ("plate", "food", "meal"),
    "couch": ("sofa",),
    "laptop": ("computer",),
    "computer": ("laptop", "desktop"),
    "bench": ("benches",),
}
PLURALS = frozenset(
    "strawberries flowers berries mashed potatoes beehives matches vegetables skis binoculars bars ruins".split()  # noqa: SIM905
)
# label words English does not count ("some broccoli", never "a broccoli"): the food and material words among the
# guiding labels that COCO captions almost never put after "a"/"an" (bread 1.5 %, broccoli 5 % of their uses in
# captions_val2017_text_only.json, mostly "a plate of broccoli"), plus the same kind of words too rare there to count
MASS_NOUNS = frozenset(
    "bread broccoli cauliflower chocolate corn dough guacamole ice cream pasta soup sunscreen fungus".split()  # noqa: SIM905
) | {"ice cream"}  # "ice" and "cream" alone too: "skating on an ice" (a Flickr8k dev caption)


@dataclass(frozen=True)
class Label:
    word: str
    prob: float  # summed over the classes that map to ``word``
    guide: bool  # may steer the caption (animals, food, vehicles, ...; never clothing or scenery)
    group: str


class LabelTable:
    """``labels.json`` of a bundle: one entry per ImageNet class."""

    def __init__(self, classes: list[dict]):
        if len(classes) != 1000:
            raise ValueError(f"label table has {len(classes)} classes, not 1000")
        self.classes = classes
        words = sorted({c["word"] for c in classes if c["word"]})
        self.words = words
        index = {w: i for i, w in enumerate(words)}
        # class -> column of its word in ``words`` (classes without a word are left out)
        self.mapped = np.array([c["index"] for c in classes if c["word"]])
        self.column = np.array([index[c["word"]] for c in classes if c["word"]])
        self.guide = {c["word"]: bool(c["guide"]) for c in classes if c["word"]}
        self.group = {c["word"]: c["group"] for c in classes if c["word"]}
        self.text_classes = np.array([c["index"] for c in classes if c["group"] == "text"], dtype=np.int64)

    @classmethod
    def load(cls, path: Path) -> LabelTable:
        return cls(json.loads(Path(path).read_text(encoding="utf-8"))["classes"])

    def word_probs(self, probs: np.ndarray) -> np.ndarray:
        """[B,1000] class probabilities -> [B,W] word probabilities (columns in ``self.words`` order)."""
        probs = np.asarray(probs, dtype=np.float32)
        return np.stack([np.bincount(self.column, row[self.mapped], len(self.words)) for row in probs])

    def text_mass(self, probs: np.ndarray) -> np.ndarray:
        """[B,1000] -> [B]: the probability that the image shows text (screenshots, menus, signs, pages, ...)."""
        return np.asarray(probs, dtype=np.float32)[:, self.text_classes].sum(axis=1)

    def top(self, probs: np.ndarray, k: int = 5, min_prob: float = 0.02) -> list[list[Label]]:
        """Per image: up to ``k`` words with summed probability >= ``min_prob``, most probable first."""
        wp = self.word_probs(np.asarray(probs, dtype=np.float32))
        out = []
        for row in wp:
            order = np.argsort(-row)[:k]
            out.append(
                [
                    Label(self.words[j], float(row[j]), self.guide[self.words[j]], self.group[self.words[j]])
                    for j in order
                    if row[j] >= min_prob
                ]
            )
        return out


def mentions(words: list[str], label: str) -> bool:
    """Does a caption (its words) already name ``label`` (the label's head word, a plural or a synonym)?"""
    have = set(words)
    head = label.split()[-1]
    names = {head, head + "s", head + "es", *SYNONYMS.get(label, ()), *SYNONYMS.get(head, ())}
    return bool(have & names) or " ".join(words).find(label) >= 0


def entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row of [B,1000] class probabilities."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)
