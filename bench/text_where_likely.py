"""Text reading as served by default (led by the object labels; no ``read_text``): word recall on rendered text
images over Flickr8k photos not used to choose the threshold, and how many photos load the text reader.

    .venv/bin/python bench/text_where_likely.py
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from captionbot.inference.captioner import Captioner  # noqa: E402
from text_samples import all_samples, meme, sign, word_recall  # noqa: E402


def main() -> int:
    photos = sorted((REPO.parent / "shared" / "data" / "flickr8k" / "images").glob("*.jpg"))
    picked = random.Random(1).sample(photos, 40)
    samples = (all_samples(picked[0].read_bytes(), picked[1].read_bytes())
               + [meme(p.read_bytes()) for p in picked[20:25]] + [sign(p.read_bytes()) for p in picked[25:30]])
    captioner = Captioner.load(None, threads=2)
    found = total = 0
    for s, out in zip(samples, captioner.caption_images([s.image for s in samples]), strict=True):
        text = getattr(out, "text", "")
        f, t = word_recall(s.text, text)
        found, total = found + f, total + t
        print(f"{s.kind:6s} {f:2d}/{t:2d}  {getattr(out, 'caption', out)}  text: {text[:60]!r}")
    print(f"word recall, text read where the labels say it is likely: {found}/{total} = {found / total:.1%}")
    fresh = Captioner.load(None, threads=2)
    fresh.caption_images([p.read_bytes() for p in picked[30:40]])
    print(f"after 10 photos: text reader loaded: {fresh.text_reader is not None}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
