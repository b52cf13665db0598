"""Smaller/faster copies of the fp32 graphs, each measured against fp32 before it goes into the manifest.

- ``int8`` (CPU): onnxruntime dynamic quantisation (weights int8, activations quantised on the fly) of the
  decoder step's MatMul/Gemm layers, which are most of the decoder's work (the step runs once per word; the
  decoder's init graph runs once per image, so it stays fp32 and the variant is 2 MB smaller). The encoder
  keeps fp32: dynamic ConvInteger is slower than the fp32 convolutions on x86 CPUs.
- ``int8-full`` (CPU): ``int8`` plus a statically quantised encoder, calibrated on the parity images: faster,
  less faithful (measured like the others; not built unless asked for).
- ``fp16`` (GPU): every graph in float16 with float32 inputs/outputs (so the runtime feeds the same arrays).

"Measured" means: the same images captioned by fp32 and by the variant with the runtime, the share of captions
that are identical, and the mean change in the captions' normalised log-probability score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from captionbot.inference.beam_search import BeamOptions, Hypothesis
from captionbot.inference.bundle import GRAPH_FILES, Bundle

from captionbot import formats

log = logging.getLogger(__name__)


@dataclass
class VariantMeasure:
    images: int
    beam_size: int
    caption_agreement: float  # share of images whose caption is identical to fp32's
    score_delta: float  # mean (variant - fp32) of the chosen captions' mean log-prob per token
    provider: str  # where it was measured

    def to_dict(self) -> dict:
        return {"images": self.images, "beam_size": self.beam_size,
                "caption_agreement": round(self.caption_agreement, 4), "score_delta": round(self.score_delta, 5),
                "measured_on": self.provider}


def make_int8(src_dir: Path, out_dir: Path, calibration: np.ndarray | None = None) -> list[str]:
    """Dynamic int8 decoder-step graph in ``out_dir``; returns the file names written."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_dir.mkdir(parents=True, exist_ok=True)
    name = formats.DECODER_STEP_FILE
    # The attention score (a 512 -> 1 projection of every region of every row) stays fp32: quantising it means
    # quantising its whole [rows, regions, 512] input at every step, which cost more than the int8 product saved.
    score = [n.name for n in onnx.load(str(src_dir / name)).graph.node
             if n.op_type in ("MatMul", "Gemm") and "attention/score" in n.name]
    quantize_dynamic(src_dir / name, out_dir / name, op_types_to_quantize=["MatMul", "Gemm"],
                     weight_type=QuantType.QInt8, nodes_to_exclude=score)
    return [name]


def make_int8_full(src_dir: Path, out_dir: Path, calibration: np.ndarray | None = None) -> list[str]:
    """``int8`` plus a statically quantised encoder (int8 weights and activations, per-channel, QDQ), calibrated
    on ``calibration`` images [N,3,H,W] (the parity images). About twice the encoder's fp32 speed on CPUs with
    VNNI; its features are ~0.98 cosine-similar to fp32, so its captions differ more: see its measurement."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration is None or not len(calibration):
        raise ValueError("int8-full needs calibration images")
    written = make_int8(src_dir, out_dir)
    n = min(len(calibration), 64)
    size = 8 if n >= 8 else n  # equal batches: the percentile calibrator stacks them
    batches = [{"images": calibration[i : i + size]} for i in range(0, n - n % size, size)]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict | None:
            return next(self._it, None)

    prepared = out_dir / "encoder.prepared.onnx"
    quant_pre_process(str(src_dir / formats.ENCODER_FILE), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(out_dir / formats.ENCODER_FILE), _Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.Percentile, extra_options={"CalibPercentile": 99.99})
    prepared.unlink()
    for leftover in out_dir.glob("*.data"):  # calibration scratch files, if any
        leftover.unlink()
    return [formats.ENCODER_FILE, *written]


def make_fp16(src_dir: Path, out_dir: Path, calibration: np.ndarray | None = None) -> list[str]:
    """float16 copies of all three graphs (float32 at their inputs/outputs) in ``out_dir``."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in GRAPH_FILES:
        model = convert_float_to_float16(onnx.load(str(src_dir / name)), keep_io_types=True)
        _sort_nodes(model.graph)  # the converter appends its input casts last; the checker wants topological order
        onnx.checker.check_model(model)
        onnx.save(model, str(out_dir / name))
    return list(GRAPH_FILES)


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` topologically (stable: original order wherever it is already valid)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input near node {rest[0].name}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def measure(
    reference: list[Hypothesis], variant_hyps: list[Hypothesis], beam_size: int, bundle: Bundle
) -> VariantMeasure:
    same = [r.tokens == v.tokens for r, v in zip(reference, variant_hyps, strict=True)]
    delta = float(np.mean([v.score(1.0) - r.score(1.0) for r, v in zip(reference, variant_hyps, strict=True)]))
    return VariantMeasure(len(same), beam_size, float(np.mean(same)), delta, bundle.providers[0])


def caption_with(bundle: Bundle, images: np.ndarray, options: BeamOptions) -> list[Hypothesis]:
    from captionbot.inference.captioner import caption_arrays

    return caption_arrays(bundle, images, options)
