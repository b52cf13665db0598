"""``python -m captionbot.export.int8_encoder BUNDLE --into``: the int8 encoder goes into the bundle's int8 variant
with its hash and a resealed manifest, so the hash checks pass and a CPU worker's ``auto`` loads it; a tampered copy
is refused like any other bundle file."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest
from captionbot.export.int8_encoder import main
from captionbot.inference.bundle import load_bundle, read_manifest

from captionbot import formats


@pytest.mark.data
def test_into_adds_a_quantised_encoder_to_the_int8_variant_and_reseals(caption_bundle: Path, data_dir: Path,
                                                                       tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(caption_bundle, bundle)
    assert main([str(bundle), "--calib", "16", "--data", str(data_dir), "--into", "--model-version", "9.9.9"]) == 0

    manifest = read_manifest(bundle)  # the digest matches the edited manifest
    formats.verify_bundle_files(bundle, manifest)
    assert formats.ENCODER_FILE in manifest.variants["int8"]["files"]
    assert "--calib 16" in manifest.variants["int8"]["encoder"]["built_by"]
    assert manifest.model_version == "9.9.9"
    ops = [n.op_type for n in onnx.load(str(bundle / "int8" / formats.ENCODER_FILE)).graph.node]
    assert "QuantizeLinear" in ops and "Clip" not in ops  # every ReLU6 quantised with its convolution

    loaded = load_bundle(bundle, variant="auto", provider="cpu", threads=1, int8_encoder=True)
    assert loaded.variant == "int8" and loaded.model_version == "9.9.9+int8"
    assert any(i.name.endswith("_quantized") for i in onnx.load(str(bundle / "int8" / formats.ENCODER_FILE))
               .graph.initializer)

    with open(bundle / "int8" / formats.ENCODER_FILE, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(formats.BundleError, match=r"int8/encoder\.onnx"):
        load_bundle(bundle, variant="auto", provider="cpu")
