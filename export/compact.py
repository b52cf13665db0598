"""Half-size fp32 bundles: weights stored as fp16 in the ONNX files, computed in fp32.

Why: the shipped bundle must stay small enough for the repository (fp32 EfficientNet-Lite0 + decoder is ~53 MB).
Storing each large weight as fp16 followed by a ``Cast`` to fp32 halves the files; onnxruntime folds the casts at
load time, so inference runs in fp32 at fp32 speed.

Why it keeps torch ↔ ONNX parity exact: before export the PyTorch model itself is rounded to fp16-representable
weights (``round_weights_to_fp16``), so the fp16 copies in ONNX hold *exactly* the model's values. Batch norm is
first fused into the preceding convolution in PyTorch (``fuse_encoder_batchnorm``): otherwise the exporter would
fold it after our rounding and the folded weights would round differently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from captionbot.training.model import Captioner
from onnx import helper, numpy_helper
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

MIN_ELEMENTS = 1024  # small tensors (biases, scalars) stay fp32: no size to win


def _fuse(parent: nn.Module, conv_name: str, bn_name: str) -> None:
    conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
    if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
        setattr(parent, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
        setattr(parent, bn_name, nn.Identity())


def fuse_encoder_batchnorm(model: Captioner) -> bool:
    """Fold every BatchNorm of an EfficientNet-Lite encoder into its convolution (in place). False for others."""
    if not model.encoder.arch.startswith("efficientnet_lite"):
        return False
    net = model.encoder.net
    _fuse(net, "_conv_stem", "_bn0")
    for block in net._blocks:
        for conv_name, bn_name in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")):
            _fuse(block, conv_name, bn_name)
    _fuse(net, "_conv_head", "_bn1")
    model.encoder._blocks = list(net._blocks)
    return True


@torch.no_grad()
def round_weights_to_fp16(model: nn.Module) -> None:
    """Round every floating-point parameter and buffer to the nearest fp16 value (kept as fp32 tensors)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            tensor.copy_(tensor.half().float())


def store_initializers_fp16(path: Path, only_exact: bool = False) -> None:
    """Rewrite ``path`` so every large fp32 initializer is stored as fp16 and cast back to fp32 on load.

    A weight that fp16 cannot hold exactly is an error (the model was not rounded first), or, with
    ``only_exact`` (variants such as int8, whose new tensors are not fp16 values), stays fp32."""
    model = onnx.load(str(path))
    graph = model.graph
    casts, kept = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if init.data_type != onnx.TensorProto.FLOAT or arr.size < MIN_ELEMENTS:
            kept.append(init)
            continue
        half = arr.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), arr):
            if only_exact:
                kept.append(init)
                continue
            raise ValueError(f"{path.name}: initializer {init.name} is not fp16-exact; round the model first")
        kept.append(numpy_helper.from_array(half, init.name + "__fp16"))
        casts.append(helper.make_node("Cast", [init.name + "__fp16"], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=init.name + "__cast"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
