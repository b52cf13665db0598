"""Served decoding on the Flickr8k dev split: CIDEr for each length normalisation (``length_alpha``) and beam
size, on the first and second half of the split (by image name) and on all of it. This is how the served
``length_alpha=1`` was chosen (on the first half) and checked (on the second): docs/model.md.

    .venv/bin/python bench/length_alpha_sweep.py --bundle models/default --alphas 0,0.5,1,1.5,2 --beams 3
    .venv/bin/python bench/length_alpha_sweep.py --bundle models/default --alphas 1 --beams 5
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.inference.captioner import Captioner, caption_features, served_options  # noqa: E402
from captionbot.training.data import read_flickr8k  # noqa: E402
from captionbot.training.metrics import score_captions  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--alphas", default="0,0.5,1,1.5,2")
    ap.add_argument("--beams", default="3")
    args = ap.parse_args()
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data"))
    images = sorted((im for im in read_flickr8k(data / "flickr8k") if im.split == "dev"), key=lambda im: im.image_id)
    captioner = Captioner.load(args.bundle)
    bundle = captioner.bundle
    arrays = np.stack([arr for _, arr in captioner.preprocess_many([im.path.read_bytes() for im in images])])
    feats = np.concatenate([bundle.encode(arrays[i : i + 8]) for i in range(0, len(arrays), 8)])
    halves = {"first half": images[: len(images) // 2], "second half": images[len(images) // 2 :], "all": images}
    for beam in (int(b) for b in args.beams.split(",")):
        for alpha in (float(a) for a in args.alphas.split(",")):
            options = dataclasses.replace(served_options(bundle, beam),
                                          length_alpha=alpha)
            hyps = [h for i in range(0, len(feats), 32) for h in caption_features(bundle, feats[i : i + 32], options)]
            caps = {im.image_id: " ".join(bundle.itos[t] for t in h.tokens) for im, h in zip(images, hyps, strict=True)}
            cider = {name: score_captions({im.image_id: im.captions for im in part},
                                          {im.image_id: caps[im.image_id] for im in part}, ("CIDEr",))[0]["CIDEr"]
                     for name, part in halves.items()}
            words = np.mean([len(h.tokens) for h in hyps])
            print(f"beam {beam} alpha {alpha}: " + ", ".join(f"{k} {v:.4f}" for k, v in cider.items())
                  + f"; mean caption {words:.2f} words", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
