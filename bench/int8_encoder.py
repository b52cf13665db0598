"""An int8 encoder for the CPU worker: what int8 convolutions give on this CPU, and what they cost in CIDEr.

Post-training static quantisation with onnxruntime.quantization: QOperator (or QDQ) graph, int8 weights per
output channel, uint8 activations calibrated on Flickr8k *train* photos (MinMax or Percentile), with chosen
layers kept in fp32 (``--keep``: the stem, the head, the depthwise convs, the label head). Then, in one run:

  speed    the encoder alone (fp32 vs int8, chunks of ENCODER_CHUNK, as the runtime calls it), batches interleaved
           ABAB, at 1 and 2 onnxruntime threads
  quality  the worker's served path (int8 decoder, served decoding rules, label head) with the fp32 and the int8
           encoder on the Flickr8k dev split: identical captions and CIDEr, on each half (A: dev images in even
           positions by name, B: odd), so a choice made on A is confirmed on B

    .venv/bin/python bench/int8_encoder.py [--dev 1000] [--calib 256] [--method minmax|percentile] [--format qdq] \\
        [--keep stem,head,labels] [--json bench/results/int8_encoder.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.inference.bundle import session_options  # noqa: E402
from captionbot.inference.captioner import ENCODER_CHUNK, Captioner  # noqa: E402
from captionbot.training.data import read_flickr8k  # noqa: E402
from captionbot.training.metrics import score_captions  # noqa: E402
from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

BUNDLE = REPO / "models" / "default"
DATA = REPO.parent / "shared" / "data" / "flickr8k"


class Batches(CalibrationDataReader):
    """Preprocessed calibration images, ENCODER_CHUNK at a time."""

    def __init__(self, arrays: np.ndarray) -> None:
        self.chunks = iter([arrays[i : i + ENCODER_CHUNK] for i in range(0, len(arrays), ENCODER_CHUNK)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self.chunks, None)
        return None if chunk is None else {"images": chunk}


def kept_nodes(model: onnx.ModelProto, keep: set[str]) -> list[str]:
    """Names of the nodes to leave in fp32: the first conv (``stem``), the last conv before the features
    (``head``), the depthwise convs (``depthwise``) and everything of the label head (``labels``)."""
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    feature_convs = [n for n in convs if "labels" not in n.name and not any("labels" in i for i in n.input)]
    out = []
    if "stem" in keep and feature_convs:
        out.append(feature_convs[0].name)
    if "head" in keep and feature_convs:
        out.append(feature_convs[-1].name)
    if "depthwise" in keep:
        out += [n.name for n in feature_convs
                if next((a.i for a in n.attribute if a.name == "group"), 1) > 1]
    if "labels" in keep:
        out += [n.name for n in model.graph.node if "labels" in n.name or any("labels" in i for i in n.input)]
    return out


def plain_fp32(src: Path, dst: Path) -> None:
    """The bundle's encoder as a plain fp32 graph for the quantiser: constants folded by onnxruntime's basic
    optimisations (the fp16-stored weights' casts, the padding sizes), then every zero ``Pad`` that feeds only
    convolutions folded into their ``pads`` (EfficientNet's "same" padding: otherwise each sits between a ReLU6 and
    the next convolution, and the int8 graph goes back to fp32 around it). One default-domain opset entry."""
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    model = onnx.load(str(dst))
    inits = {i.name: i for i in model.graph.initializer}
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    for pad in [n for n in model.graph.node if n.op_type == "Pad"]:
        mode = next((helper.get_attribute_value(a) for a in pad.attribute if a.name == "mode"), b"constant")
        if mode != b"constant" or pad.input[1] not in inits or (len(pad.input) > 3 and pad.input[3]):
            continue
        if len(pad.input) > 2 and pad.input[2] and (pad.input[2] not in inits
                                                    or numpy_helper.to_array(inits[pad.input[2]]).any()):
            continue
        pads = numpy_helper.to_array(inits[pad.input[1]]).tolist()
        convs = users.get(pad.output[0], [])
        if len(pads) != 8 or pads[0] or pads[1] or pads[4] or pads[5] or any(c.op_type != "Conv" for c in convs):
            continue
        for conv in convs:
            old = next((a for a in conv.attribute if a.name == "pads"), None)
            have = list(helper.get_attribute_value(old)) if old is not None else [0, 0, 0, 0]
            if old is not None:
                conv.attribute.remove(old)
            conv.attribute.append(helper.make_attribute("pads", [have[0] + pads[2], have[1] + pads[3],
                                                                 have[2] + pads[6], have[3] + pads[7]]))
            conv.input[0] = pad.input[0]
        model.graph.node.remove(pad)
    seen: dict[str, onnx.OperatorSetIdProto] = {}
    for op in model.opset_import:
        seen.setdefault(op.domain, op)
    del model.opset_import[:]
    model.opset_import.extend(seen.values())
    onnx.save(model, str(dst))


def quantise(src: Path, dst: Path, calib: np.ndarray, method: str, keep: set[str], fmt: str = "qoperator") -> list[str]:
    """fp32 encoder graph -> QDQ int8 graph at ``dst``; returns the nodes kept in fp32."""
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        plain_fp32(src, pre)
        excluded = kept_nodes(onnx.load(str(pre)), keep)
        quantize_static(
            str(pre), str(dst), Batches(calib), per_channel=True,
            quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
            nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod.Percentile if method == "percentile" else CalibrationMethod.MinMax,
            extra_options={"CalibPercentile": 99.999} if method == "percentile" else {},
        )
    return excluded


def encoder_speed(c32: Captioner, c8: Captioner, arrays: np.ndarray, rounds: int) -> tuple[float, float]:
    """images/s of the fp32 and int8 encoders, rounds interleaved (A B A B ...)."""
    secs = [0.0, 0.0]
    for _ in range(rounds):
        for k, c in enumerate((c32, c8)):
            t0 = time.perf_counter()
            for i in range(0, len(arrays), ENCODER_CHUNK):
                c.bundle.encode_with_labels(arrays[i : i + ENCODER_CHUNK])
            secs[k] += time.perf_counter() - t0
    return rounds * len(arrays) / secs[0], rounds * len(arrays) / secs[1]


def with_encoder(threads: int, encoder: Path | None) -> Captioner:
    """The served captioner (int8 decoder) with its encoder session replaced by ``encoder`` (None: the bundle's)."""
    import onnxruntime as ort

    c = Captioner.load(BUNDLE, variant="int8", provider="cpu", threads=threads, read_text=False)
    if encoder is not None:
        c.bundle.encoder = ort.InferenceSession(str(encoder), sess_options=session_options(threads),
                                                providers=["CPUExecutionProvider"])
    return c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", type=int, default=1000, help="dev images to score (first N by name)")
    ap.add_argument("--calib", type=int, default=256, help="train images to calibrate on")
    ap.add_argument("--method", choices=("minmax", "percentile"), default="minmax")
    ap.add_argument("--format", choices=("qoperator", "qdq"), default="qoperator",
                    help="QOperator (QLinearConv: ReLU6 fused, faster here) or QDQ graph")
    ap.add_argument("--keep", default="labels", help="comma-separated: stem, head, labels (kept in fp32)")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds of the speed test")
    ap.add_argument("--out", type=Path, default=None, help="keep the int8 encoder here")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    items = read_flickr8k(DATA)
    train = sorted((it for it in items if it.split == "train"), key=lambda it: it.path.name)
    dev = sorted((it for it in items if it.split == "dev"), key=lambda it: it.path.name)[: args.dev]
    c32 = with_encoder(1, None)
    rng = np.random.default_rng(0)
    calib_items = [train[i] for i in rng.choice(len(train), args.calib, replace=False)]
    calib = np.stack([c32.preprocess(it.path.read_bytes())[1] for it in calib_items])
    tmp = tempfile.TemporaryDirectory()
    dst = args.out or Path(tmp.name) / "encoder_int8.onnx"
    t0 = time.perf_counter()
    excluded = quantise(BUNDLE / "encoder.onnx", dst, calib, args.method, set(filter(None, args.keep.split(","))),
                        args.format)
    print(f"quantised in {time.perf_counter() - t0:.0f} s; {len(excluded)} node(s) kept in fp32; "
          f"{dst.stat().st_size / 1e6:.1f} MB", flush=True)
    report: dict[str, object] = {"method": args.method, "keep": args.keep, "calib_images": args.calib}
    arrays = calib[:32]
    for threads in (1, 2):
        a, b = with_encoder(threads, None), with_encoder(threads, dst)
        fp32, int8 = encoder_speed(a, b, arrays, args.rounds)
        print(f"encoder alone, {threads} thread(s): fp32 {fp32:.1f} images/s, int8 {int8:.1f} images/s "
              f"({int8 / fp32:.2f}x)", flush=True)
        report[f"encoder_images_per_s_{threads}t"] = {"fp32": fp32, "int8": int8}
    c8 = with_encoder(1, dst)
    caps: dict[str, dict[str, str]] = {"fp32": {}, "int8": {}}
    for name, c in (("fp32", c32), ("int8", c8)):
        for i in range(0, len(dev), 32):
            chunk = dev[i : i + 32]
            for it, out in zip(chunk, c.caption_images([it.path.read_bytes() for it in chunk]), strict=True):
                caps[name][it.image_id] = getattr(out, "caption", "")
        print(f"captioned {len(dev)} dev images with the {name} encoder", flush=True)
    refs = {it.image_id: it.captions for it in dev}
    for half, sel in (("A", dev[0::2]), ("B", dev[1::2]), ("all", dev)):
        ids = [it.image_id for it in sel]
        scores = {name: score_captions({k: refs[k] for k in ids}, {k: caps[name][k] for k in ids}, ("CIDEr",))[0]
                  ["CIDEr"] for name in caps}
        same = np.mean([caps["fp32"][k] == caps["int8"][k] for k in ids])
        print(f"dev {half} ({len(ids)} images): CIDEr fp32 {100 * scores['fp32']:.2f}, int8 "
              f"{100 * scores['int8']:.2f} ({100 * (scores['int8'] - scores['fp32']):+.2f} points); "
              f"{same:.0%} identical captions", flush=True)
        report[f"dev_{half}"] = {"images": len(ids), "cider": scores, "identical": float(same)}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
