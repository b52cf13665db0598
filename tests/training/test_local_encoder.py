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
