"""CIDEr (and BLEU-4) of ``captionbot evaluate`` caption files on the Flickr8k dev split, by halves: A = the first
500 images by name (where choices are made), B = the other 500 (confirmation), and all 1,000.

    captionbot evaluate models/default --flickr8k ../shared/data/flickr8k --split dev --beam 3 --as-served \\
        --metrics BLEU,CIDEr --out /tmp/eval-default.json
    .venv/bin/python bench/cider_halves.py /tmp/eval-default.captions.json /tmp/eval-candidate.captions.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.training.data import read_flickr8k  # noqa: E402
from captionbot.training.metrics import score_captions  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("captions", type=Path, nargs="+", help="*.captions.json files written by captionbot evaluate")
    args = ap.parse_args()
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data")) / "flickr8k"
    refs = {img.image_id: img.captions for img in read_flickr8k(data) if img.split == "dev"}
    for path in args.captions:
        caps = {row["image_id"]: row["caption"] for row in json.loads(path.read_text())}
        names = sorted(caps)
        row = []
        for half, keys in (("A", names[:500]), ("B", names[500:]), ("all", names)):
            scores, _ = score_captions(refs, {k: caps[k] for k in keys}, ("BLEU", "CIDEr"))
            row.append(f"{half} CIDEr {scores['CIDEr']:.4f} BLEU-4 {scores['Bleu_4']:.4f}")
        print(f"{path}: " + "; ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
