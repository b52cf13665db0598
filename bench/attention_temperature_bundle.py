"""A copy of a bundle whose decoder attends with a temperature: alpha = softmax(e / T) instead of softmax(e)
(issue 19's cheapest fix, no retraining). T < 1 sharpens the attention the decoder *uses* (the context vector is
computed from the sharpened map), so the heatmap stays what the model looked at. Written outside the repository;
``models/default`` is never touched. The fp32 step and, when present, the int8 variant's step are both changed.

    .venv/bin/python bench/attention_temperature_bundle.py --temperature 0.5 --out /work/heatmap-candidate
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.formats import DECODER_STEP_FILE, MANIFEST_FILE, Manifest, sha256_file  # noqa: E402

SOFTMAX = "/attention/Softmax"


def with_temperature(model: onnx.ModelProto, temperature: float) -> onnx.ModelProto:
    """Insert ``scores * (1 / temperature)`` before the attention softmax (the node that outputs ``alpha``)."""
    nodes = list(model.graph.node)
    k = next(i for i, n in enumerate(nodes) if n.op_type == "Softmax" and "alpha" in n.output)
    soft = nodes[k]
    scale = numpy_helper.from_array(np.array(1.0 / temperature, dtype=np.float32), "attention_inv_temperature")
    model.graph.initializer.append(scale)
    scaled = soft.input[0] + "_tempered"
    mul = helper.make_node("Mul", [soft.input[0], scale.name], [scaled], name="/attention/Temperature")
    soft.input[0] = scaled
    model.graph.node.insert(k, mul)
    onnx.checker.check_model(model)
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--temperature", type=float, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.out.resolve().is_relative_to(REPO):
        ap.error("write candidate bundles outside the repository")
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(args.bundle, args.out)
    d = json.loads((args.out / MANIFEST_FILE).read_text())
    steps = [DECODER_STEP_FILE] + [f"{v['dir']}/{DECODER_STEP_FILE}" for v in d["variants"].values()
                                   if f"{v['dir']}/{DECODER_STEP_FILE}" in d["files"]]
    for rel in steps:
        path = args.out / rel
        onnx.save(with_temperature(onnx.load(str(path)), args.temperature), str(path))
        d["files"][rel] = sha256_file(path)
    d["model_version"] = f"{d['model_version']}+att-t{args.temperature:g}"
    d["scores"] = []  # the source bundle's scores do not hold for this one
    for v in d["variants"].values():
        for key in [k for k in v if k.endswith("_delta") or k in ("caption_agreement", "score_delta")]:
            v.pop(key)
    (args.out / MANIFEST_FILE).write_text(Manifest.from_json(json.dumps({**d, "digest": ""})).to_json() + "\n")
    print(f"{args.out}: attention temperature {args.temperature:g} in {', '.join(steps)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
