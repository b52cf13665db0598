"""Which layers to keep in fp32 for an int8 encoder: a quick sweep on dev half A (the first 96 dev images in even
positions by name), before a full dev run of the best (``bench/int8_encoder.py``). Per configuration: relative
error of the features against fp32, identical served captions, encoder speed ratio (ABAB, 1 thread).

    .venv/bin/python bench/int8_encoder_sweep.py     # bench/results/int8_encoder_sweep.log
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from captionbot.training.data import read_flickr8k
from int8_encoder import BUNDLE, DATA, encoder_speed, quantise, with_encoder

CONFIGS = [("minmax", "labels"), ("minmax", "labels,head,stem"), ("percentile", "labels,head,stem"),
           ("minmax", "labels,head,stem,depthwise"), ("percentile", "labels,head,stem,depthwise")]


def main() -> int:
    items = read_flickr8k(DATA)
    train = sorted((it for it in items if it.split == "train"), key=lambda it: it.path.name)
    dev = sorted((it for it in items if it.split == "dev"), key=lambda it: it.path.name)[0:200:2][:96]
    c = with_encoder(1, None)
    rng = np.random.default_rng(0)
    calib = np.stack([c.preprocess(train[i].path.read_bytes())[1] for i in rng.choice(len(train), 128, replace=False)])
    devx = np.stack([c.preprocess(it.path.read_bytes())[1] for it in dev])

    def captions(cap) -> list[str]:
        return [getattr(o, "caption", "") for i in range(0, len(dev), 32)
                for o in cap.caption_images([it.path.read_bytes() for it in dev[i : i + 32]])]

    def features(cap) -> np.ndarray:
        return np.concatenate([cap.bundle.encode_with_labels(devx[i : i + 8])[0] for i in range(0, len(devx), 8)])

    ref_caps, ref_f = captions(c), features(c)
    with tempfile.TemporaryDirectory() as tmp:
        for k, (method, keep) in enumerate(CONFIGS):
            dst = Path(tmp) / f"enc{k}.onnx"
            quantise(BUNDLE / "encoder.onnx", dst, calib, method, set(keep.split(",")))
            c8 = with_encoder(1, dst)
            f = features(c8)
            same = np.mean([a == b for a, b in zip(captions(c8), ref_caps, strict=True)])
            fp32, int8 = encoder_speed(c, c8, devx[:32], 3)
            print(f"{method:10s} fp32 kept: {keep:28s} feature rel. error "
                  f"{np.linalg.norm(f - ref_f) / np.linalg.norm(ref_f):.3f}  identical captions {same:.0%}  "
                  f"encoder speed {int8 / fp32:.2f}x fp32", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
