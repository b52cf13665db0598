"""Checkpoint averaging: the mean of the weights of several checkpoints of one run.

Why: the last few epochs of a cosine schedule wander around a minimum; their average usually sits nearer its
centre and generalises better than any one of them (Polyak averaging, as in many captioning and translation
systems), at no training cost.
"""

from __future__ import annotations

from pathlib import Path

import torch
from captionbot.training.checkpoint import load_checkpoint, save_checkpoint


def average_checkpoints(paths: list[Path], out: Path) -> Path:
    """Write ``out``: the last checkpoint with its floating-point model weights replaced by the mean over ``paths``.

    Raises ValueError when the checkpoints do not share vocabulary and shapes (they come from different runs).
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    ckpts = [load_checkpoint(p) for p in paths]
    base = ckpts[-1]
    for p, c in zip(paths, ckpts, strict=True):
        if c["vocab"] != base["vocab"] or c["decoder_config"] != base["decoder_config"]:
            raise ValueError(f"{p} is not from the same run as {paths[-1]} (vocabulary or sizes differ)")
    averaged = {}
    for name, tensor in base["model"].items():
        if tensor.is_floating_point():
            averaged[name] = torch.stack([c["model"][name].float() for c in ckpts]).mean(0).to(tensor.dtype)
        else:
            averaged[name] = tensor
    fields = {k: v for k, v in base.items() if k not in ("optimizer", "scheduler", "rng")}  # not resumable
    fields["model"] = averaged
    fields["averaged_from"] = [str(p) for p in paths]
    save_checkpoint(out, **fields)
    return out
