"""Fit the caption ``confidence`` (inference/confidence.py) on half A of both dev sets and check it on half B:
a logistic model of "per-image CIDEr >= GOOD_CIDER" from the runtime's features, then the risk-coverage table
(mean per-image CIDEr of the captions kept vs the share kept, most confident first) and a calibration table on
COCO dev half B, and the corpus CIDEr when captions under a hedging threshold say "Possibly ...".

    .venv/bin/python bench/coco_dev_eval.py --out bench/results/coco_dev_eval.json
    .venv/bin/python bench/confidence_fit.py bench/results/coco_dev_eval.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.inference.captioner import as_sentence  # noqa: E402
from captionbot.inference.confidence import GOOD_CIDER, confidence, features, hedged  # noqa: E402
from captionbot.inference.labels import Label, mentions  # noqa: E402


def served(rec: dict) -> tuple[str, float, float, list[Label], bool]:
    """The served caption's words, its per-image CIDEr, decoder score, labels and whether a label started it."""
    g = rec["served_guided"]
    labels = [Label(w, p, guide, "") for w, p, guide in rec["labels"]]
    words = rec["guided"] if g else rec["free"]
    return words, rec["cider_guided"] if g else rec["cider_free"], rec["score"] if g else rec["free_score"], labels, g


def design(recs: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, y, c = [], [], []
    for r in recs:
        words, cider, score, labels, g = served(r)
        names_top = bool(labels) and mentions(words.split(), labels[0].word)
        X.append(features(score, labels, r["entropy"], g, names_top))
        y.append(float(cider >= GOOD_CIDER))
        c.append(cider)
    return np.array(X), np.array(y), np.array(c)


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 50) -> np.ndarray:
    """Newton's method on the L2-penalised log-likelihood (the intercept is not penalised)."""
    w = np.zeros(X.shape[1])
    pen = np.full(X.shape[1], l2)
    pen[0] = 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-X @ w))
        grad = X.T @ (p - y) + pen * w
        hess = (X * (p * (1 - p))[:, None]).T @ X + np.diag(pen)
        w -= np.linalg.solve(hess, grad)
    return w


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", type=Path)
    ap.add_argument("--hedge", default="0.1,0.2,0.3")
    args = ap.parse_args()
    recs = json.loads(args.records.read_text())
    train = [r for name in recs for r in recs[name] if r["half"] == "A"]
    X, y, _ = design(train)
    w = fit_logistic(X, y)
    print(
        "WEIGHTS =",
        tuple(round(float(v), 3) for v in w),
        f"(fitted on {len(train)} half-A images, {y.mean():.2f} of them with CIDEr >= {GOOD_CIDER})",
    )
    for name in recs:
        for half in ("A", "B"):
            Xh, yh, ch = design([r for r in recs[name] if r["half"] == half])
            conf = np.array([confidence(x, w) for x in Xh])
            order = np.argsort(-conf)
            auc_pairs = [
                (a > b) + 0.5 * (a == b)
                for a, ya in zip(conf, yh, strict=True)
                if ya
                for b, yb in zip(conf, yh, strict=True)
                if not yb
            ]
            print(
                f"{name} half {half}: {len(yh)} images, {yh.mean():.2f} good, mean confidence {conf.mean():.2f}, "
                f"AUC {np.mean(auc_pairs):.3f}"
            )
            if name == "coco-dev" and half == "B":
                print("  risk-coverage (share kept: mean per-image CIDEr of the kept, lowest confidence kept)")
                for share in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2):
                    k = max(1, round(share * len(order)))
                    print(f"  {share:.0%}: {ch[order[:k]].mean():.3f} (conf >= {conf[order[k - 1]]:.2f})")
                print("  calibration (confidence bucket: images, mean confidence, share good)")
                for lo, hi in ((0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.01)):
                    m = (conf >= lo) & (conf < hi)
                    if m.any():
                        print(f"  [{lo:.1f}, {hi:.1f}): {m.sum()}, {conf[m].mean():.2f}, {yh[m].mean():.2f}")
    hedge_scores(recs, w, [float(t) for t in args.hedge.split(",")])
    return 0


def hedge_scores(recs: dict, w: np.ndarray, thresholds: list[float]) -> None:
    """Corpus CIDEr per half when the captions under each threshold are hedged as served."""
    from captionbot.training.data import read_coco, read_flickr8k
    from captionbot.training.metrics import score_captions

    data = REPO.parent / "shared" / "data"
    refs = {
        "flickr8k-dev": {im.image_id: im.captions for im in read_flickr8k(data / "flickr8k") if im.split == "dev"},
        "coco-dev": {
            im.image_id: im.captions
            for im in read_coco(data / "coco/annotations/captions_val2017_dev.json", data / "coco/val2017", "dev")
        },
    }
    for name in recs:
        for t in (0.0, *thresholds):
            caps, n = {}, 0
            for r in recs[name]:
                words, _, score, labels, g = served(r)
                names_top = bool(labels) and mentions(words.split(), labels[0].word)
                conf = confidence(features(score, labels, r["entropy"], g, names_top), w)
                caps[r["image_id"]] = hedged(as_sentence(words.split()), labels, conf, below=t)
                n += caps[r["image_id"]].startswith("Possibly")
            row = []
            for half in ("A", "B", "all"):
                ids = [r["image_id"] for r in recs[name] if half in (r["half"], "all")]
                s = score_captions({i: refs[name][i] for i in ids}, {i: caps[i] for i in ids}, ("CIDEr",))[0]
                row.append(f"{half} {s['CIDEr']:.3f}")
            print(f"{name} hedged below {t}: {n} hedged; CIDEr " + ", ".join(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
