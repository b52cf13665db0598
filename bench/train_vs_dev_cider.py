"""How well does a checkpoint know its own training captions? Beam-search CIDEr on the first N Flickr8k training
images against the first N dev images (by name), with the frozen encoder's cached features. A large gap means the
decoder recalls its training references: docs/model.md uses it to explain why self-critical training on the
training images lowered dev CIDEr.

    .venv/bin/python bench/train_vs_dev_cider.py runs/default/avg.pt --images 500
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from captionbot.training.checkpoint import load_captioner, load_checkpoint  # noqa: E402
from captionbot.training.data import read_flickr8k  # noqa: E402
from captionbot.training.evaluate import generate_captions  # noqa: E402
from captionbot.training.features import FeatureCache  # noqa: E402
from captionbot.training.metrics import score_captions  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, help="a checkpoint trained on frozen features (not fine-tuned)")
    ap.add_argument("--flickr8k", type=Path, default=Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared"
                                                                         / "data")) / "flickr8k")
    ap.add_argument("--cache-dir", type=Path, default=REPO / "cache")
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--beam", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if load_checkpoint(args.checkpoint).get("encoder_fine_tuned"):
        print("this check reads the frozen encoder's cache: give a checkpoint whose encoder was not fine-tuned")
        return 2
    torch.set_num_threads(args.threads)
    model, vocab = load_captioner(args.checkpoint)
    items = read_flickr8k(args.flickr8k)
    cache = FeatureCache.build(args.cache_dir / model.encoder.arch, [im.path for im in items],
                               arch=model.encoder.arch)
    for split in ("train", "dev"):
        images = sorted((im for im in items if im.split == split), key=lambda im: im.image_id)[: args.images]
        captions = generate_captions(model.decoder, cache.get, [im.image_id for im in images], vocab, args.beam)
        scores, _ = score_captions({im.image_id: im.captions for im in images}, captions, ("CIDEr",))
        print(f"{split}: CIDEr {scores['CIDEr']:.3f} on {len(images)} images, beam {args.beam}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
