"""The benchmark's PyTorch baseline rebuilt from the shipped bundle computes what the bundle's graphs compute, so
README's throughput figures can be rerun from a fresh clone (no training checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captionbot.export.from_bundle import captioner_from_bundle
from captionbot.export.tiny import synthetic_images
from captionbot.inference.bundle import load_bundle
from captionbot.inference.preprocess import decode_image, to_array

from captionbot import formats
from captionbot.settings import DEFAULT_BUNDLE


@pytest.mark.skipif(not (DEFAULT_BUNDLE / formats.MANIFEST_FILE).is_file(), reason="no shipped bundle")
@torch.no_grad()
def test_pytorch_rebuilt_from_the_bundle_matches_its_graphs():
    model, itos = captioner_from_bundle(DEFAULT_BUNDLE)
    bundle = load_bundle(DEFAULT_BUNDLE, provider="cpu", threads=1)
    assert itos == bundle.itos
    enc = bundle.manifest.encoder
    x = np.stack([to_array(decode_image(d, size=enc.input_size), enc.input_size, enc.mean, enc.std)
                  for d in synthetic_images(2)])
    feats = bundle.encode(x)
    assert np.abs(model.encoder(torch.from_numpy(x)).numpy() - feats).max() < 1e-3
    h, c, att = bundle.init(feats)
    th, tc, _ = model.decoder.init_state(torch.from_numpy(feats))
    assert np.abs(th.numpy() - h).max() < 1e-4 and np.abs(tc.numpy() - c).max() < 1e-4
    words = np.full(len(x), itos.index("<start>"), dtype=np.int64)
    log_probs = bundle.step(words, h, c, feats, att)[0]
    t = model.decoder.step(*(torch.from_numpy(a) for a in (words, h, c, feats, att)))[0].numpy()
    assert np.abs(t - log_probs).max() < 1e-4
    assert (t.argmax(1) == log_probs.argmax(1)).all()
