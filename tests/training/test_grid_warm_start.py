"""A local-grid captioner started from the shipped bundle (issue 19): it starts out computing what the shipped model
computes when its attended context is the image's mean feature, and its local cells only matter once trained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from captionbot.export.from_bundle import captioner_from_bundle
from captionbot.inference.bundle import load_bundle
from captionbot.inference.preprocess import decode_image, to_array
from captionbot.training.checkpoint import load_captioner, load_checkpoint
from captionbot.training.data import CaptionedImage
from captionbot.training.grid_warm_start import main, warm_started_grid
from captionbot.training.model import LOCAL_CHANNELS

from captionbot import formats
from captionbot.settings import DEFAULT_BUNDLE

pytestmark = pytest.mark.skipif(not (DEFAULT_BUNDLE / formats.MANIFEST_FILE).is_file(), reason="no shipped bundle")


def _photos(images: list[CaptionedImage], side: int | tuple[int, int], mean: tuple, std: tuple) -> np.ndarray:
    size = (side, side) if isinstance(side, int) else tuple(side)
    return np.stack([to_array(decode_image(im.path.read_bytes(), size=size), size, mean, std) for im in images])


@torch.no_grad()
def test_the_global_vector_is_the_bundle_encoders_mean_feature(few_images: list[CaptionedImage]) -> None:
    model, itos = warm_started_grid(DEFAULT_BUNDLE)
    bundle = load_bundle(DEFAULT_BUNDLE, provider="cpu", threads=1, variant="fp32")
    assert itos.itos == bundle.itos
    enc = bundle.manifest.encoder
    x = _photos(few_images[:3], enc.input_size, enc.mean, enc.std)
    feats = model.encoder(torch.from_numpy(x)).numpy()
    assert feats.shape == (3, 196, LOCAL_CHANNELS + 1280)
    # the shipped, fine-tuned encoder top (batch norms fused in the bundle, rebuilt unfused here), pooled
    assert np.abs(feats[:, 0, LOCAL_CHANNELS:] - bundle.encode(x).mean(1)).max() < 1e-3
    assert float(np.abs(feats[:, :, :LOCAL_CHANNELS]).mean()) > 0.01  # and real local cells in front


@torch.no_grad()
def test_it_starts_as_the_shipped_decoder_reading_the_mean_feature(few_images: list[CaptionedImage]) -> None:
    model, itos = warm_started_grid(DEFAULT_BUNDLE)
    shipped, _ = captioner_from_bundle(DEFAULT_BUNDLE)
    enc = shipped.encoder
    x = torch.from_numpy(_photos(few_images[3:6], enc.input_size, enc.mean, enc.std))
    grid_feats = model.encoder(x)
    # every shipped cell = the mean feature: whatever its attention, the shipped context is then that mean
    flat = shipped.encoder(x).mean(1, keepdim=True).expand(-1, 49, -1).contiguous()
    words = torch.full((3,), itos.stoi["<start>"], dtype=torch.long)
    h, c, att = model.decoder.init_state(grid_feats)
    sh, sc, satt = shipped.decoder.init_state(flat)
    assert torch.allclose(h, sh, atol=1e-4) and torch.allclose(c, sc, atol=1e-4)
    for _ in range(3):  # three greedy words
        lp, h, c, alpha = model.decoder.step(words, h, c, grid_feats, att)
        slp, sh, sc, _ = shipped.decoder.step(words, sh, sc, flat, satt)
        assert alpha.shape == (3, 196)
        assert (lp - slp).abs().max() < 1e-3
        words = lp.argmax(1)
    # until trained, the local cells change nothing: zero them and the words' log-probabilities stay the same
    blind = grid_feats.clone()
    blind[:, :, :LOCAL_CHANNELS] = 0
    h0, c0, a0 = model.decoder.init_state(grid_feats)
    hb, cb, ab = model.decoder.init_state(blind)
    start = torch.full((3,), itos.stoi["<start>"], dtype=torch.long)
    assert torch.allclose(model.decoder.step(start, h0, c0, grid_feats, a0)[0],
                          model.decoder.step(start, hb, cb, blind, ab)[0], atol=1e-5)


def test_the_checkpoint_loads_and_says_its_encoder_top_is_tuned(tmp_path: Path) -> None:
    out = tmp_path / "warm.pt"
    assert main([str(DEFAULT_BUNDLE), "--out", str(out), "--attention", "64"]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt["encoder_fine_tuned"] and ckpt["encoder_arch"] == "efficientnet_lite0_local"
    model, vocab = load_captioner(out)
    assert model.decoder.cfg.attention_dim == 64 and model.decoder.cfg.shared_dim == 1280
    assert vocab.itos[:4] == ["<pad>", "<start>", "<end>", "<unk>"]


def test_an_encoder_without_a_global_vector_is_refused() -> None:
    with pytest.raises(ValueError, match="no global vector"):
        warm_started_grid(DEFAULT_BUNDLE, arch="efficientnet_lite0")
