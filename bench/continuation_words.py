"""The words a caption may continue with after a forced non-animal label ("a cup of coffee ..."): what COCO
captions say after an inanimate object noun. From the 23,949 text-only COCO captions, for captions starting
"a/an <noun>" with <noun> one of the bundle's non-animal guiding label words, count the words that follow; keep
those used at least ``--min-count`` times that the decoder's vocabulary has. Prints a Python frozenset literal
for ``inference/guided.py`` (``CONTINUATION_WORDS``).

    .venv/bin/python bench/continuation_words.py --min-count 20
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-count", type=int, default=20)
    args = ap.parse_args()
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data"))
    caps = json.loads((data / "coco/annotations/captions_val2017_text_only.json").read_text())["annotations"]
    table = json.loads((REPO / "models/default/labels.json").read_text())["classes"]
    vocab = set(json.loads((REPO / "models/default/vocab.json").read_text())["itos"])
    nouns = {c["word"].split()[-1] for c in table if c["guide"] and c["group"] not in ("animal", "person")}
    counts: Counter[str] = Counter()
    for ann in caps:
        words = re.findall(r"[a-z]+", ann["caption"].lower())
        for i, w in enumerate(words[:4]):
            if w in nouns and i >= 1 and words[i - 1] in ("a", "an", "the", "some", "two"):
                counts.update(words[i + 1 :])
                break
    keep = sorted(w for w, n in counts.items() if n >= args.min_count and w in vocab)
    print(f"# {len(keep)} words from {sum(counts.values())} continuation tokens")
    print("frozenset(" + repr(keep) + ")")


if __name__ == "__main__":
    main()
