"""CIDEr of the captions exactly as users get them (``Captioner.caption_images``: labels, guidance, language
models, article fixes, hedging "Possibly …"), half A / half B / all, for one or more bundles, on Flickr8k dev
(1,000) and the COCO val2017 dev photos (107), with the number of hedged captions.

    git archive 5f56259 models/default | tar -x -C /tmp/before
    .venv/bin/python bench/served_cider.py /tmp/before/models/default models/default
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.inference.captioner import Captioner  # noqa: E402
from captionbot.training.data import read_coco, read_flickr8k  # noqa: E402
from captionbot.training.metrics import score_captions  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", type=Path, nargs="+")
    ap.add_argument("--sets", default="coco-dev,flickr8k-dev")
    args = ap.parse_args()
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data"))
    for name in args.sets.split(","):
        if name == "coco-dev":
            images = read_coco(data / "coco/annotations/captions_val2017_dev.json", data / "coco/val2017", "dev")
        else:
            images = [im for im in read_flickr8k(data / "flickr8k") if im.split == "dev"]
        images = sorted(images, key=lambda im: im.image_id)
        blobs = [im.path.read_bytes() for im in images]
        refs = {im.image_id: im.captions for im in images}
        half = len(images) // 2
        for bundle in args.bundles:
            captioner = Captioner.load(bundle, provider="cpu", threads=1)
            outs = [o for i in range(0, len(blobs), 16) for o in captioner.caption_images(blobs[i : i + 16])]
            caps = {im.image_id: getattr(o, "caption", "") for im, o in zip(images, outs, strict=True)}
            scores = []
            for part in (images[:half], images[half:], images):
                s = score_captions({im.image_id: refs[im.image_id] for im in part},
                                   {im.image_id: caps[im.image_id] for im in part}, ("CIDEr",))[0]
                scores.append(f"{s['CIDEr']:.3f}")
            hedged = sum(c.startswith("Possibly") for c in caps.values())
            print(f"{name} {bundle} ({captioner.model_version}): CIDEr A / B / all {' / '.join(scores)}; "
                  f"hedged {hedged} of {len(images)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
