"""The ImageNet label head of a bundle: the ORIGINAL EfficientNet-Lite0 last block + head + classifier, run on the
shipped encoder's activation before its fine-tuned last block, added to ``encoder.onnx`` as a second output.

Why not the classifier on the shipped features: the caption model fine-tuned the last block and head, so the
original classifier on its pooled features agrees with the original network's top-1 on only 91.5 % of 200 dev
images (top-5 overlap 0.896); the rebuilt branch agrees on 100 % (0.996; ``bench/label_head_agreement.py``).
The branch costs about a tenth of the encoder (one 7×7 block, a 1×1 conv and a 1280×1000 matrix).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import compose
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

CUT = "/_blocks.14/Add_output_0"  # [B,192,7,7]: input of block 15, the block the caption model fine-tuned
OUTPUT = "label_probs"  # [B,1000]: ImageNet class probabilities (softmax)


class LabelHead(nn.Module):
    """Block 15 + conv head + pooling + classifier of the original network, batch norm folded."""

    def __init__(self, net: Any):  # efficientnet_lite_pytorch's EfficientNet: untyped
        super().__init__()
        block = net._blocks[15]
        self.expand = fuse_conv_bn_eval(block._expand_conv.eval(), block._bn0.eval())
        self.depthwise = fuse_conv_bn_eval(block._depthwise_conv.eval(), block._bn1.eval())
        self.project = fuse_conv_bn_eval(block._project_conv.eval(), block._bn2.eval())
        self.head = fuse_conv_bn_eval(net._conv_head.eval(), net._bn1.eval())
        self.fc = net._fc
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.expand(x))
        h = self.act(self.depthwise(h))  # the fused conv keeps its own static "same" padding
        h = self.project(h)  # lite0's last block has no skip connection (192 -> 320 channels)
        h = self.act(self.head(h))
        return self.fc(h.mean((2, 3))).softmax(-1)


def pretrained_label_head() -> LabelHead:
    from captionbot.export.compact import round_weights_to_fp16
    from captionbot.training.model import _efficientnet_lite

    head = LabelHead(_efficientnet_lite("efficientnet_lite0", pretrained=True).eval()).eval()
    with torch.no_grad():
        round_weights_to_fp16(head)
    return head


def add_label_output(encoder_path: Path, out_path: Path, opset: int = 17) -> None:
    """Write ``encoder_path`` plus the ``label_probs`` output to ``out_path`` (``features`` is unchanged)."""
    from captionbot.export.compact import store_initializers_fp16

    enc = onnx.load(str(encoder_path))
    if any(o.name == OUTPUT for o in enc.graph.output):
        raise ValueError(f"{encoder_path} already has a {OUTPUT} output")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                pretrained_label_head(),
                (torch.zeros(1, 192, 7, 7),),
                str(path),
                input_names=["cut"],
                output_names=[OUTPUT],
                opset_version=opset,
                dynamic_axes={"cut": {0: "batch"}, OUTPUT: {0: "batch"}},
                do_constant_folding=True,
                dynamo=False,
            )
        store_initializers_fp16(path)
        head = onnx.load(str(path))
    enc.graph.output.append(onnx.helper.make_tensor_value_info(CUT, onnx.TensorProto.FLOAT, None))
    head.ir_version = enc.ir_version
    head = compose.add_prefix(head, "labels/")
    merged = compose.merge_models(enc, head, io_map=[(CUT, "labels/cut")], outputs=["features", "labels/" + OUTPUT])
    merged.graph.output[1].name = OUTPUT
    for node in merged.graph.node:
        node.output[:] = [OUTPUT if o == "labels/" + OUTPUT else o for o in node.output]
    onnx.checker.check_model(merged, full_check=True)
    onnx.save(merged, str(out_path))


def add_labels_to_bundle(bundle_dir: Path) -> None:
    """Give a bundle its label head and word table: rewrite ``encoder.onnx`` with the ``label_probs`` output,
    write ``labels.json``, and record both in the manifest (``files`` hashes and the ``labels`` field)."""

    from captionbot.export.label_table import PROVENANCE, build_table, categories, dumps

    from captionbot import formats

    bundle_dir = Path(bundle_dir)
    manifest = formats.Manifest.from_json((bundle_dir / formats.MANIFEST_FILE).read_text(encoding="utf-8"))
    encoder = bundle_dir / formats.ENCODER_FILE
    tmp = encoder.with_suffix(".labels.tmp")
    add_label_output(encoder, tmp, manifest.opset)
    tmp.replace(encoder)
    table = {"provenance": PROVENANCE, "source": "efficientnet_lite0 ImageNet-1k", "classes": build_table(categories())}
    (bundle_dir / formats.LABELS_FILE).write_text(dumps(table), encoding="utf-8")
    for name in (formats.ENCODER_FILE, formats.LABELS_FILE):
        manifest.files[name] = formats.sha256_file(bundle_dir / name)
    manifest.labels = {
        "file": formats.LABELS_FILE,
        "output": OUTPUT,
        "classes": 1000,
        "source": "original EfficientNet-Lite0 ImageNet classifier (block 15 + head + fc, not fine-tuned) on the "
        "encoder's block-14 activation",
    }
    (bundle_dir / formats.MANIFEST_FILE).write_text(manifest.to_json() + "\n", encoding="utf-8")


if __name__ == "__main__":
    import sys

    add_labels_to_bundle(Path(sys.argv[1]))
