"""Shallow fusion with the caption language models (``inference/fused.py``), served captions (free beam search,
label-guided pass, fused second search for the other unsure captions, article fixes) on Flickr8k dev (1,000) and
the COCO val2017 dev photos (107, out of domain), without the LM, with the bundle's served setting and any others asked
for: CIDEr on half A (first half by image id: where settings are chosen), half B (confirmation) and all, and the
grammar slips (``bench/grammar_slips.py``) in the captions.

    .venv/bin/python bench/lm_fusion_eval.py --out bench/results/lm_fusion_eval.json

Encoder outputs are cached in ``--cache`` (default /tmp/captionbot-dev-features) so reruns only decode.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from captionbot.inference.caption_lm import DomainRatio  # noqa: E402
from captionbot.inference.captioner import ENCODER_CHUNK, Captioner, caption_features  # noqa: E402
from captionbot.inference.fused import Fusion, bundle_fusion, refine_unguided  # noqa: E402
from captionbot.inference.grammar import fix_articles  # noqa: E402
from captionbot.inference.guided import SERVED_POLICY, guide_captions  # noqa: E402
from captionbot.inference.labels import LabelTable  # noqa: E402
from captionbot.training.data import read_coco, read_flickr8k  # noqa: E402
from captionbot.training.metrics import score_captions  # noqa: E402
from grammar_slips import count_slips  # noqa: E402


def encoded(captioner: Captioner, name: str, images: list, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    path = cache / f"{name}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["feats"], z["probs"]
    bundle = captioner.bundle
    arrays = np.stack([a for _, a in captioner.preprocess_many([im.path.read_bytes() for im in images])])
    enc = [bundle.encode_with_labels(arrays[i : i + ENCODER_CHUNK]) for i in range(0, len(arrays), ENCODER_CHUNK)]
    feats, probs = np.concatenate([f for f, _ in enc]), np.concatenate([p for _, p in enc])
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, feats=feats, probs=probs)
    return feats, probs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--lm", type=Path, default=None, help="a caption_lm.npz to use instead of the bundle's own")
    ap.add_argument("--weights", default="", help="LM weights to try besides the served one")
    ap.add_argument("--gates", default="-1.1", help="lm_max_free_score values to try with each weight")
    ap.add_argument("--sets", default="flickr8k-dev,coco-dev")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/captionbot-dev-features"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data"))
    sets = {
        "flickr8k-dev": lambda: [im for im in read_flickr8k(data / "flickr8k") if im.split == "dev"],
        "coco-dev": lambda: read_coco(data / "coco/annotations/captions_val2017_dev.json", data / "coco/val2017",
                                      "dev"),
    }
    captioner = Captioner.load(args.bundle)
    bundle = captioner.bundle
    table = LabelTable.load(args.bundle / bundle.manifest.labels["file"])
    if args.lm is not None:
        bundle.lm = DomainRatio.load(args.lm, len(bundle.itos))
    served = bundle_fusion(bundle)
    variants: dict[str, Fusion | None] = {"no LM": None}
    for w in (float(x) for x in args.weights.split(",") if x):
        for gate in (float(x) for x in args.gates.split(",")):
            variants[f"LM weight {w}, gate {gate}"] = Fusion(w, gate)
    if served is not None:
        variants[f"served (LM weight {served.weight}, gate {served.max_free_score})"] = served
    records: dict[str, dict] = {}
    for name in args.sets.split(","):
        images = sorted(sets[name](), key=lambda im: im.image_id)
        feats, probs = encoded(captioner, name, images, args.cache)
        labels = table.top(probs)
        refs = {im.image_id: im.captions for im in images}
        half = len(images) // 2
        parts = {"A": images[:half], "B": images[half:], "all": images}
        for vname, fusion in variants.items():
            options = captioner.options
            t0 = time.perf_counter()
            guided = []
            for i in range(0, len(feats), 32):
                free = caption_features(bundle, feats[i : i + 32], options)
                part = guide_captions(bundle, feats[i : i + 32], free, labels[i : i + 32], options, SERVED_POLICY)
                guided += refine_unguided(bundle, feats[i : i + 32], part, options, fusion)
            secs = time.perf_counter() - t0
            caps = {im.image_id: " ".join(fix_articles(g.words)) for im, g in zip(images, guided, strict=True)}
            row = {}
            for pname, part in parts.items():
                s = score_captions({im.image_id: refs[im.image_id] for im in part},
                                   {im.image_id: caps[im.image_id] for im in part}, ("CIDEr",))[0]
                row[pname] = round(float(s["CIDEr"]), 4)
            slips = count_slips(list(caps.values()))
            print(f"{name} {vname}: CIDEr A {row['A']:.3f} B {row['B']:.3f} all {row['all']:.3f}; "
                  f"slips {sum(slips.values())} {slips}; decode {secs:.1f}s", flush=True)
            records.setdefault(name, {})[vname] = {"cider": row, "slips": slips, "decode_s": round(secs, 1),
                                                   "captions": caps}
    if args.out:
        args.out.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
