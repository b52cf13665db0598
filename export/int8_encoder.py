"""The int8 encoder of a bundle's ``int8`` variant: post-training static quantisation, reproducible.

What it builds (``docs/model.md``, "An int8 encoder"): the bundle's fp32 encoder, its constants folded and
EfficientNet's explicit "same" ``Pad``s folded into the convolutions (exact), quantised by
onnxruntime.quantization as a QDQ graph with

- int8 weights, one scale per output channel;
- uint8 activations calibrated (min-max by default) on Flickr8k *train* photos, preprocessed as the runtime does;
- ``Conv`` **and** ``Clip`` (EfficientNet-Lite's ReLU6) quantised: the quantiser then removes each ReLU6 that
  follows a quantised convolution and gives the convolution's output the ReLU6's range ([0, 6]), so onnxruntime
  fuses DQ → Conv → Q into one int8 convolution whose output is clipped for free. Leaving ``Clip`` out (the first
  attempts) left every ReLU6 in fp32 between a dequantise and a quantise, and calibrated the convolution's output
  on its unclipped range: −3 to −5 CIDEr as served instead of ±1;
- the label head (the ImageNet classifier on block 14, ``labels/...`` nodes) quantised the same way (its final
  ``Gemm`` stays fp32, stored as fp16 as in the bundle): keeping it fp32 (``--fp32-labels``) gave the same served
  captions on the whole dev split, labels no closer to fp32's, and a 1.2x slower encoder.

    .venv/bin/python -m captionbot.export.int8_encoder models/default --calib 256 --into --model-version 1.2.1
        # writes models/default/int8/encoder.onnx, lists it in the int8 variant and reseals the manifest
    .venv/bin/python bench/int8_encoder.py --encoder models/default/int8/encoder.onnx \\
        --json bench/results/int8_encoder.json
    .venv/bin/python -m captionbot.export.int8_encoder models/default --record bench/results/int8_encoder.json
        # its CIDEr and speed figures into the manifest (reseals)

``--out FILE`` writes the graph only. The bundle's fp32 ``encoder.onnx`` is not changed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx

from captionbot import formats

METHODS = ("minmax", "percentile", "entropy")
OP_TYPES = ("Conv", "Clip")  # what is quantised; everything else (Add, ReduceMean, Gemm, Softmax) stays fp32
CHUNK = 8  # calibration batch: the runtime's encoder chunk
VARIANT = "int8"


def fold_pads(src: Path, dst: Path) -> None:
    """The fp32 encoder as a plain graph for the quantiser: constants folded by onnxruntime's basic optimisations
    (the fp16-stored weights' casts, the padding sizes), then every zero ``Pad`` that feeds only convolutions
    folded into their ``pads`` (exact). One default-domain opset entry."""
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(dst)
    opts.log_severity_level = 3
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


def label_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the label head's nodes (exported under ``labels/``). By name only: after constant folding every
    ReLU6 of the encoder shares the label head's ``labels//act/Constant...`` bounds, so "reads a ``labels``
    tensor" (the first attempts' rule) also matched, and kept in fp32, every ReLU6 of the encoder."""
    return [n.name for n in model.graph.node if n.name.startswith("labels/")]


def quantise(src: Path, dst: Path, calibration: np.ndarray, method: str = "minmax", quantise_labels: bool = True,
             op_types: Sequence[str] = OP_TYPES, percentile: float = 99.999) -> None:
    """fp32 encoder graph ``src`` -> QDQ int8 graph ``dst``, calibrated on ``calibration`` [N,3,H,W]."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    n = len(calibration) - len(calibration) % CHUNK  # equal batches: the histogram calibrators stack them
    if n == 0:
        raise ValueError(f"needs at least {CHUNK} calibration images")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(calibration[i : i + CHUNK] for i in range(0, n, CHUNK))

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self._it, None)
            return None if chunk is None else {"images": chunk}

    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                 "entropy": CalibrationMethod.Entropy}[method]
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "plain.onnx"
        fold_pads(src, pre)
        excluded = [] if quantise_labels else label_nodes(onnx.load(str(pre)))
        cwd = os.getcwd()
        os.chdir(tmp)  # the calibrator writes its augmented model beside the working directory
        try:
            quantize_static(
                str(pre), str(dst), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types),
                nodes_to_exclude=excluded, calibrate_method=calibrate,
                extra_options={"CalibPercentile": percentile} if method == "percentile"
                else _fold_every(n // CHUNK) if method == "minmax" else {},
            )
        finally:
            os.chdir(cwd)
    from captionbot.export.compact import store_initializers_fp16

    # what stays fp32 (the label head's final Gemm, 5 MB) was fp16 in the bundle: stored so again, exactly
    store_initializers_fp16(dst, only_exact=True)


def _fold_every(batches: int) -> dict[str, int]:
    """Min-max calibration folding its ranges every few batches (bounded memory, same ranges). The histogram
    methods keep every activation of every calibration image (~50 MB an image here): give them few images.
    onnxruntime refuses a run whose last fold leaves nothing behind, so the period must not divide ``batches``."""
    period = next((k for k in range(8, 1, -1) if batches % k), 0)
    return {"CalibMaxIntermediateOutputs": period} if period else {}


def train_photos(data: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` Flickr8k *train* photos (never dev), drawn with ``seed`` from the split list sorted by name."""
    names = sorted((data / "flickr8k" / "Flickr_8k.trainImages.txt").read_text().split())
    paths = [data / "flickr8k" / "images" / n for n in names]
    paths = [p for p in paths if p.is_file()]
    rng = np.random.default_rng(seed)
    return [paths[i] for i in sorted(rng.choice(len(paths), count, replace=False))]


def calibration_arrays(bundle: Path, photos: Sequence[Path]) -> np.ndarray:
    """The photos preprocessed exactly as the runtime feeds the encoder (decode, resize, normalise)."""
    from captionbot.inference.preprocess import decode_image, to_array

    manifest = formats.Manifest.from_json((bundle / formats.MANIFEST_FILE).read_text(encoding="utf-8"))
    size = manifest.encoder.input_size
    return np.stack([to_array(decode_image(p.read_bytes(), size=size), size, manifest.encoder.mean,
                              manifest.encoder.std) for p in photos])


def add_to_bundle(bundle: Path, encoder_file: Path, built_by: str, model_version: str | None = None) -> None:
    """Copy ``encoder_file`` into ``bundle``'s int8 variant as ``int8/encoder.onnx``, list it (its sha256, the
    variant's ``files``, how it was built) and reseal the manifest's digest."""
    from captionbot.inference.bundle import read_manifest

    manifest = read_manifest(bundle)
    info = manifest.variants.get(VARIANT)
    if info is None:
        raise formats.BundleError(f"{bundle} has no {VARIANT} variant to add the encoder to")
    rel = f"{info['dir']}/{formats.ENCODER_FILE}"
    target = bundle / rel
    if encoder_file.resolve() != target.resolve():
        target.write_bytes(encoder_file.read_bytes())
    manifest.files[rel] = formats.sha256_file(target)
    info["files"] = sorted({*info.get("files", []), formats.ENCODER_FILE})
    info["encoder"] = {"built_by": built_by}
    if model_version:
        manifest.model_version = model_version
    info["note"] = ("caption_agreement, score_delta, BLEU-4_delta, CIDEr_delta: the int8 decoder alone vs fp32 "
                    "(50 dev photos, beam 3, at export); encoder: the int8 encoder vs fp32, both with the int8 "
                    "decoder, as served (bench/int8_encoder.py)")
    (bundle / formats.MANIFEST_FILE).write_text(manifest.to_json() + "\n", encoding="utf-8")


def record_measure(bundle: Path, bench_json: Path) -> None:
    """Put the summary of a ``bench/int8_encoder.py --encoder BUNDLE/int8/encoder.onnx --json`` run into the int8
    variant's ``encoder`` entry and reseal."""
    from captionbot.inference.bundle import read_manifest

    manifest = read_manifest(bundle)
    info = manifest.variants[VARIANT]
    report = json.loads(bench_json.read_text())
    if formats.sha256_file(bundle / info["dir"] / formats.ENCODER_FILE) != report.get("encoder_sha256"):
        raise ValueError(f"{bench_json} measured another file than {bundle}'s {info['dir']}/{formats.ENCODER_FILE}")
    info["encoder"] = {**info.get("encoder", {}), **report["summary"]}
    (bundle / formats.MANIFEST_FILE).write_text(manifest.to_json() + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, help="the bundle whose fp32 encoder.onnx is quantised")
    ap.add_argument("--calib", type=int, default=256, help="Flickr8k train photos to calibrate on")
    ap.add_argument("--seed", type=int, default=0, help="which train photos (numpy default_rng seed)")
    ap.add_argument("--method", choices=METHODS, default="minmax")
    ap.add_argument("--fp32-labels", action="store_true", help="keep the label head in fp32")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("CAPTIONBOT_DATA", "../shared/data")))
    ap.add_argument("--out", type=Path, default=None, help="write the int8 graph here")
    ap.add_argument("--into", action="store_true", help="add it to the bundle's int8 variant and reseal")
    ap.add_argument("--model-version", default=None, help="with --into: the bundle's new model_version")
    ap.add_argument("--record", type=Path, default=None, metavar="BENCH.json",
                    help="build nothing: record a bench/int8_encoder.py run of the bundle's int8 encoder in its "
                    "manifest and reseal")
    args = ap.parse_args(argv)
    if args.record:
        record_measure(args.bundle, args.record)
        print(f"{args.bundle}: {args.record} recorded in the {VARIANT} variant, resealed")
        return 0
    if args.out is None and not args.into:
        ap.error("give --out FILE and/or --into (or --record BENCH.json)")
    photos = train_photos(args.data, args.calib, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / formats.ENCODER_FILE
        quantise(args.bundle / formats.ENCODER_FILE, out, calibration_arrays(args.bundle, photos), args.method,
                 quantise_labels=not args.fp32_labels)
        print(f"{out}: {out.stat().st_size / 1e6:.1f} MB ({args.method}, {len(photos)} train photos)")
        if args.into:
            built_by = (f"python -m captionbot.export.int8_encoder BUNDLE --calib {args.calib} --seed {args.seed} "
                        f"--method {args.method}{' --fp32-labels' if args.fp32_labels else ''} --into")
            add_to_bundle(args.bundle, out, built_by, args.model_version)
            print(f"{args.bundle}: {VARIANT}/{formats.ENCODER_FILE} added to the {VARIANT} variant, resealed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
