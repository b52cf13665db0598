"""PyTorch Captioner -> the three ONNX graphs of a bundle (encoder, decoder_init, decoder_step), dynamic batch.

Input/output names come from ``captionbot/formats.py``. ``decoder_init`` and ``decoder_step`` are plain traces
of ``Decoder.init_state`` and ``Decoder.step``, so the graphs compute exactly what the PyTorch model computes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from captionbot.training.model import Captioner, Decoder
from torch import nn

from captionbot import formats

OPSET = 17


class _InitGraph(nn.Module):
    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.decoder.init_state(features)


class _StepGraph(nn.Module):
    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, word, h, c, features, att_proj):
        return self.decoder.step(word, h, c, features, att_proj)


def _export(module: nn.Module, args: tuple, path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...],
            batch_axes: dict[str, dict[int, str]], opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and constant-folding notes
        torch.onnx.export(
            module, args, str(path), input_names=list(inputs), output_names=list(outputs),
            dynamic_axes=batch_axes, opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


@torch.inference_mode(False)
def export_graphs(model: Captioner, out_dir: Path, opset: int = OPSET) -> list[Path]:
    """Write encoder.onnx, decoder_init.onnx and decoder_step.onnx into ``out_dir``; each passes onnx.checker."""
    model = model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    enc, dec = model.encoder, model.decoder
    size = enc.input_size
    with torch.no_grad():
        images = torch.randn(2, 3, size, size)
        features = enc(images)
        h, c, att_proj = dec.init_state(features)
        word = torch.tensor([1, 1], dtype=torch.long)
    n = {0: "batch"}
    paths = [out_dir / formats.ENCODER_FILE, out_dir / formats.DECODER_INIT_FILE, out_dir / formats.DECODER_STEP_FILE]
    _export(enc, (images,), paths[0], formats.ENCODER_INPUTS, formats.ENCODER_OUTPUTS,
            {"images": n, "features": n}, opset)
    _export(_InitGraph(dec), (features,), paths[1], formats.DECODER_INIT_INPUTS, formats.DECODER_INIT_OUTPUTS,
            {name: n for name in formats.DECODER_INIT_INPUTS + formats.DECODER_INIT_OUTPUTS}, opset)
    _export(_StepGraph(dec), (word, h, c, features, att_proj), paths[2], formats.DECODER_STEP_INPUTS,
            formats.DECODER_STEP_OUTPUTS,
            {name: n for name in formats.DECODER_STEP_INPUTS + formats.DECODER_STEP_OUTPUTS}, opset)
    return paths
