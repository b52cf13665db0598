"""Served captions with and without label guidance, on Flickr8k dev (1,000) and the COCO val2017 dev photos (107,
out of domain): BLEU-4 / METEOR / CIDEr on half A (first half by image id), half B and all, for each guidance
threshold; per-image records (caption, labels, scores, per-image CIDEr) go to a JSON file for the confidence fit.

    .venv/bin/python bench/coco_dev_eval.py --out bench/results/coco_dev_eval.json

Its "served policy" is 1.1.0's: since 1.2.0 the served captions also go through the caption language models and
the article fixes, measured by ``bench/lm_fusion_eval.py`` (and as users get them, hedging included, by
``bench/served_cider.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.inference.captioner import ENCODER_CHUNK, Captioner, caption_features  # noqa: E402
from captionbot.inference.guided import ANY_LABEL, REDO_NAMED, SERVED_POLICY, GuidePolicy, choose_label, guide_captions  # noqa: E402
from captionbot.inference.labels import LabelTable, entropy, mentions  # noqa: E402
from captionbot.training.data import read_coco, read_flickr8k  # noqa: E402
from captionbot.training.metrics import ptb_tokenize, score_captions  # noqa: E402


def per_image_cider(refs: dict[str, list[str]], caps: dict[str, str]) -> dict[str, float]:
    from pycocoevalcap.cider.cider import Cider

    keys = sorted(caps)
    gts = ptb_tokenize({k: refs[k] for k in keys})
    res = ptb_tokenize({k: [caps[k]] for k in keys})
    _, scores = Cider().compute_score({k: gts[k] for k in keys}, {k: res[k] for k in keys})
    return dict(zip(keys, (float(s) for s in scores), strict=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--thresholds", default="0.2,0.3,0.5", help="label thresholds of the ungated variants")
    ap.add_argument("--metrics", default="BLEU,METEOR,CIDEr")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--sets", default="flickr8k-dev,coco-dev")
    args = ap.parse_args()
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data"))
    sets = {
        "flickr8k-dev": [im for im in read_flickr8k(data / "flickr8k") if im.split == "dev"],
        "coco-dev": read_coco(data / "coco/annotations/captions_val2017_dev.json", data / "coco/val2017", "dev"),
    }
    captioner = Captioner.load(args.bundle)
    bundle = captioner.bundle
    table = LabelTable.load(args.bundle / bundle.manifest.labels["file"])
    variants: dict[str, GuidePolicy | None] = {"free (served before)": None}
    for t in args.thresholds.split(","):
        variants[f"any guiding label >= {t}"] = GuidePolicy(float(t), 0.0, float(t))
    variants["served policy + rewrite unsure captions that name a non-animal label"] = REDO_NAMED
    variants["served policy"] = SERVED_POLICY
    records: dict[str, list[dict]] = {}
    for name, images in ((k, v) for k, v in sets.items() if k in args.sets.split(",")):
        images = sorted(images, key=lambda im: im.image_id)
        arrays = np.stack([a for _, a in captioner.preprocess_many([im.path.read_bytes() for im in images])])
        enc = [bundle.encode_with_labels(arrays[i : i + ENCODER_CHUNK]) for i in range(0, len(arrays), ENCODER_CHUNK)]
        feats = np.concatenate([f for f, _ in enc])
        probs = np.concatenate([p for _, p in enc])
        labels = table.top(probs)
        free = [
            h for i in range(0, len(feats), 32) for h in caption_features(bundle, feats[i : i + 32], captioner.options)
        ]
        guided = []
        for i in range(0, len(feats), 32):
            guided += guide_captions(
                bundle, feats[i : i + 32], free[i : i + 32], labels[i : i + 32], captioner.options, ANY_LABEL
            )
        refs = {im.image_id: im.captions for im in images}
        half = len(images) // 2
        parts = {"A": images[:half], "B": images[half:], "all": images}
        for vname, policy in variants.items():
            caps = {}
            for im, g, labs in zip(images, guided, labels, strict=True):
                use = policy is not None and choose_label(labs, g.free_words, g.free_score, policy) is not None
                caps[im.image_id] = " ".join(g.words if use else g.free_words)
            row = []
            for pname, part in parts.items():
                s = score_captions(
                    {im.image_id: refs[im.image_id] for im in part},
                    {im.image_id: caps[im.image_id] for im in part},
                    tuple(args.metrics.split(",")),
                )[0]
                row.append(
                    f"{pname} CIDEr {s['CIDEr']:.3f}"
                    + (f" B4 {s['Bleu_4']:.3f} M {s['METEOR']:.3f}" if "Bleu_4" in s and pname == "all" else "")
                )
            changed = sum(caps[im.image_id] != " ".join(g.free_words) for im, g in zip(images, guided, strict=True))
            print(f"{name} {vname}: " + "; ".join(row) + f"; changed {changed}/{len(images)}", flush=True)
        free_caps = {im.image_id: " ".join(g.free_words) for im, g in zip(images, guided, strict=True)}
        guided_caps = {im.image_id: " ".join(g.words) for im, g in zip(images, guided, strict=True)}
        c_free, c_guided = per_image_cider(refs, free_caps), per_image_cider(refs, guided_caps)
        ent = entropy(probs)
        records[name] = [
            {
                "image_id": im.image_id,
                "half": "A" if k < half else "B",
                "free": free_caps[im.image_id],
                "guided": guided_caps[im.image_id],
                "label": g.label.word if g.label else None,
                "served_guided": choose_label(labs, g.free_words, g.free_score, SERVED_POLICY) is not None,
                "label_prob": g.label.prob if g.label else None,
                "free_score": g.free_score,
                "score": g.score,
                "labels": [(lab.word, round(lab.prob, 4), lab.guide) for lab in labs],
                "entropy": float(ent[k]),
                "top_mentioned": bool(labs) and mentions(g.free_words, labs[0].word),
                "cider_free": c_free[im.image_id],
                "cider_guided": c_guided[im.image_id],
            }
            for k, (im, g, labs) in enumerate(zip(images, guided, labels, strict=True))
        ]
    if args.out:
        args.out.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
