"""Does the distance of an image's features from the training images predict a wrong caption beyond what the
confidence already uses (issue 13, item 4)? Pooled encoder features of ``--train`` Flickr8k training photos; for
each dev image, the mean cosine distance to its ``--k`` nearest training images. The confidence's logistic model is
refitted on half A of both dev sets with and without it, and the ranking AUC of "per-image CIDEr >= 0.5" compared on
half B (per-image records of ``bench/coco_dev_eval.py``, encoder outputs cached by ``bench/lm_fusion_eval.py``).

    .venv/bin/python bench/confidence_distance.py bench/results/coco_dev_eval.json
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
sys.path.insert(0, str(REPO / "bench"))

from captionbot.inference.captioner import ENCODER_CHUNK, Captioner  # noqa: E402
from captionbot.training.data import read_flickr8k  # noqa: E402
from confidence_fit import design, fit_logistic  # noqa: E402


def auc(score: np.ndarray, y: np.ndarray) -> float:
    pos, neg = score[y == 1], score[y == 0]
    return float(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])) if len(pos) and len(neg) else 0.5


def pooled(captioner: Captioner, paths: list[Path]) -> np.ndarray:
    arrays = np.stack([a for _, a in captioner.preprocess_many([p.read_bytes() for p in paths])])
    feats = np.concatenate([captioner.bundle.encode(arrays[i : i + ENCODER_CHUNK])
                            for i in range(0, len(arrays), ENCODER_CHUNK)])
    return feats.mean(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", type=Path)
    ap.add_argument("--train", type=int, default=600)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/captionbot-dev-features"))
    args = ap.parse_args()
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data"))
    captioner = Captioner.load(REPO / "models" / "default", provider="cpu", threads=1)
    train = sorted((im for im in read_flickr8k(data / "flickr8k") if im.split == "train"), key=lambda im: im.image_id)
    ref = pooled(captioner, [im.path for im in train[:: max(1, len(train) // args.train)]][: args.train])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    records = json.loads(args.records.read_text(encoding="utf-8"))
    parts: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for name, recs in records.items():
        with np.load(args.cache / f"{name}.npz") as z:
            f = z["feats"].mean(1)
        assert len(f) == len(recs), (name, len(f), len(recs))
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        dist = np.sort(1 - f @ ref.T, axis=1)[:, : args.k].mean(1)
        X, y, _ = design(recs)
        half = np.array([r["half"] for r in recs])
        print(f"{name}: mean kNN cosine distance {dist.mean():.3f}; AUC of -distance alone (half B) "
              f"{auc(-dist[half == 'B'], y[half == 'B']):.3f}")
        parts[name] = {h: (X[half == h], dist[half == h], y[half == h]) for h in ("A", "B")}
    XA = np.concatenate([p["A"][0] for p in parts.values()])
    dA = np.concatenate([p["A"][1] for p in parts.values()])
    yA = np.concatenate([p["A"][2] for p in parts.values()])
    w0 = fit_logistic(XA, yA)
    w1 = fit_logistic(np.column_stack([XA, dA * 10]), yA)
    for name, p in parts.items():
        XB, dB, yB = p["B"]
        print(f"{name} half B AUC: confidence's inputs {auc(XB @ w0, yB):.3f}; + feature distance "
              f"{auc(np.column_stack([XB, dB * 10]) @ w1, yB):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
