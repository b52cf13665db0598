"""The 14×14 local-grid encoder (issue 19): per cell, Lite0's stride-16 features, then the image's global vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from captionbot.inference.preprocess import decode_image, to_array
from captionbot.training.data import CaptionedImage
from captionbot.training.model import ENCODERS, LOCAL_SCALE, Encoder


def _pixels(paths: list[Path], enc: Encoder) -> torch.Tensor:
    size = (enc.input_size, enc.input_size)
    return torch.from_numpy(
        np.stack([to_array(decode_image(p.read_bytes(), size=size), size, enc.mean, enc.std) for p in paths])
    )


def test_local_grid_is_196_cells_of_local_then_global_features(few_images: list[CaptionedImage]) -> None:
    local, plain = Encoder("efficientnet_lite0_local").eval(), Encoder("efficientnet_lite0").eval()
    assert ENCODERS["efficientnet_lite0_local"][3:] == (112 + 1280, 14)
    x = _pixels([im.path for im in few_images[:2]], local)
    with torch.no_grad():
        feats, head = local(x), plain(x)
    assert feats.shape == (2, 196, 1392)
    glob = feats[:, :, 112:]
    assert torch.equal(glob, glob[:, :1].expand_as(glob))  # the same global vector in every cell
    assert torch.allclose(glob[:, 0], head.mean(1), atol=1e-5)  # = the usual 7×7×1280 features, pooled
    with torch.no_grad():  # the local part: the 112-channel, 14×14 stage (block 10) under each cell, scaled
        net = local.net
        stage = local._run_blocks(net._swish(net._bn0(net._conv_stem(x))), 0, 11)
    assert stage.shape == (2, 112, 14, 14)
    assert torch.allclose(feats[:, :, :112], LOCAL_SCALE * stage.flatten(2).transpose(1, 2), atol=1e-6)
    cells = feats[:, :, :112]
    assert float((cells - cells.mean(1, keepdim=True)).abs().mean()) > 0.1  # cells differ: local, not constant
    # greying the top-left quarter of the photo leaves the bottom-right quarter's local cells almost unchanged
    grey = x.clone()
    grey[:, :, :112, :112] = 0.0
    with torch.no_grad():
        g = local(grey)[:, :, :112].reshape(2, 14, 14, 112)
    f = cells.reshape(2, 14, 14, 112)
    far = (g[:, 10:, 10:] - f[:, 10:, 10:]).abs().mean() / f[:, 10:, 10:].abs().mean()
    near = (g[:, :7, :7] - f[:, :7, :7]).abs().mean() / f[:, :7, :7].abs().mean()
    assert far < 0.05 < near


def test_local_grid_fine_tunes_the_global_part_and_leaves_the_local_cells_frozen(
        few_images: list[CaptionedImage], tmp_path: Path) -> None:
    from captionbot.training.train import TrainConfig, Trainer, prepare_features

    cfg = TrainConfig(out_dir=tmp_path / "run", encoder="efficientnet_lite0_local", embed_dim=64, hidden_dim=96,
                      attention_dim=48, dropout=0.0, min_count=1, batch_size=8, lr=3e-3, warmup_steps=1,
                      weight_decay=0.0, val_limit=0, progress=False, epochs=1, max_steps_per_epoch=2,
                      fine_tune_blocks=1, encoder_lr_scale=1.0, cache_dir=tmp_path / "cache", no_shared_context=True)
    trunk, _ = prepare_features(cfg, few_images[:4])
    # one cached array per image: the 14×14 local cells (unscaled) and, packed in the spare channels, the 7×7×192
    # activations that enter the last block
    assert trunk.features.shape[1:] == (196, 112 + 49 * 192 // 196)
    trainer = Trainer(cfg, few_images[:4], [], trunk)
    # --no-shared-context: the global vector only shapes the initial state and the attention scores (and is saved)
    assert trainer.checkpoint_fields()["decoder_config"]["shared_in_context"] is False
    encoder = trainer.model.encoder
    top, local_stage = encoder._blocks[-1], encoder._blocks[10]
    top_before = [p.detach().clone() for p in top.parameters()]
    local_before = [p.detach().clone() for p in local_stage.parameters()]
    x = _pixels([few_images[0].path], encoder)
    with torch.no_grad():
        before = encoder.eval()(x)
        # the packed trunk through the top blocks is the whole encoder's output for the same pixels
        assert torch.allclose(encoder.top(encoder.trunk(x, 1), 1), before, atol=1e-5)
    trainer.run_epoch()  # two steps
    assert any(not torch.equal(a, b) for a, b in zip(top_before, top.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(local_before, local_stage.parameters(), strict=True))
    with torch.no_grad():
        after = encoder.eval()(x)
    assert torch.equal(after[:, :, :112], before[:, :, :112])  # local cells: unchanged
    assert not torch.allclose(after[:, :, 112:], before[:, :, 112:])  # the global vector: tuned
    np.testing.assert_allclose(trainer.validation_features([few_images[0].image_id])[0], after[0].numpy(),
                               atol=0.05)


def test_local7_grid_averages_the_local_cells_two_by_two(few_images: list[CaptionedImage]) -> None:
    """efficientnet_lite0_local7: the shipped grid's 49 cells, each the 2×2 average of the 14×14 local cells under
    it, with the same global vector; its split trunk/top (fine-tuning) gives the same features."""
    fine, coarse = Encoder("efficientnet_lite0_local").eval(), Encoder("efficientnet_lite0_local7").eval()
    assert ENCODERS["efficientnet_lite0_local7"][3:] == (112 + 1280, 7)
    x = _pixels([im.path for im in few_images[:2]], coarse)
    with torch.no_grad():
        f14, f7 = fine(x), coarse(x)
        top = coarse.top(coarse.trunk(x, 1), 1)
    assert f7.shape == (2, 49, 1392)
    local14 = f14[:, :, :112].reshape(2, 7, 2, 7, 2, 112)
    assert torch.allclose(f7[:, :, :112], local14.mean((2, 4)).reshape(2, 49, 112), atol=1e-6)
    assert torch.allclose(f7[:, :, 112:], f14[:, :49, 112:], atol=1e-6)
    assert torch.allclose(top, f7, atol=1e-5)
    # still local: greying the top-left quarter leaves the bottom-right cells' local part almost unchanged
    grey = x.clone()
    grey[:, :, :112, :112] = 0.0
    with torch.no_grad():
        g = coarse(grey)[:, :, :112].reshape(2, 7, 7, 112)
    f = f7[:, :, :112].reshape(2, 7, 7, 112)
    far = (g[:, 5:, 5:] - f[:, 5:, 5:]).abs().mean() / f[:, 5:, 5:].abs().mean()
    assert far < 0.05
