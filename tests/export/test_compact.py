"""A bundle exported with fp16-stored weights is about half the size and still captions exactly like PyTorch."""

from pathlib import Path

import onnx
import torch
from captionbot.export.compact import fuse_encoder_batchnorm, round_weights_to_fp16
from captionbot.export.exporter import ExportOptions, export_bundle, preprocess_all
from captionbot.export.tiny import make_tiny_model, synthetic_images
from captionbot.inference.captioner import Captioner

from captionbot import formats


def _size(bundle: Path) -> int:
    return sum((bundle / f).stat().st_size for f in (formats.ENCODER_FILE, formats.DECODER_INIT_FILE,
                                                      formats.DECODER_STEP_FILE))


def test_fp16_weights_halve_the_bundle_and_keep_parity(tmp_path: Path) -> None:
    model, itos = make_tiny_model()
    images = synthetic_images(4)
    plain = export_bundle(model, itos, tmp_path / "plain", images, ExportOptions(variants=()))
    half = export_bundle(model, itos, tmp_path / "half", images, ExportOptions(variants=(), fp16_weights=True))
    # export refuses a bundle whose captions differ from the (rounded) PyTorch model: it was written, so parity held
    assert all(r.ok for r in half.parity)
    assert _size(half.path) < 0.6 * _size(plain.path)
    step = onnx.load(str(half.path / formats.DECODER_STEP_FILE))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in step.graph.initializer)
    # the runtime loads it (hash check included) and its captions are those of the rounded model's graphs
    runtime = Captioner.load(half.path)
    assert all(not isinstance(out, Exception) and out.words for out in runtime.caption_images(images, beam_size=3))


def test_batchnorm_fusion_keeps_the_features_and_rounding_makes_every_weight_fp16_exact() -> None:
    model, _ = make_tiny_model()
    x = torch.from_numpy(preprocess_all(synthetic_images(2), model))
    with torch.no_grad():
        before = model.encoder(x)
        assert fuse_encoder_batchnorm(model)
        fused = model.encoder(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.encoder.modules())
    assert torch.allclose(before, fused, atol=1e-3, rtol=1e-3)
    round_weights_to_fp16(model)
    for p in model.parameters():
        assert torch.equal(p, p.half().float())
