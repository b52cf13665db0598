"""Checkpoints: everything needed to rebuild the captioner (for export) and to resume training exactly.

A checkpoint is a ``torch.save`` dict:
  model            Captioner.state_dict() (encoder + decoder)
  decoder_config   DecoderConfig.to_dict()
  encoder_arch     e.g. "efficientnet_lite0"
  vocab            Vocab.to_dict()
  optimizer, scheduler, rng (python, numpy, torch, cuda)   for exact resume
  epoch, step      epochs/steps completed
  best_score, best_epoch, bad_epochs, history, train_config
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from captionbot.training.data import Vocab
from captionbot.training.model import Captioner, DecoderConfig


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, **fields: Any) -> None:
    """Write atomically (temp file + rename), so a crash mid-save never leaves a broken checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(fields, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    # weights_only=False: the checkpoint holds RNG states (numpy arrays, tuples); only load files you made.
    return torch.load(Path(path), map_location="cpu", weights_only=False)


def load_captioner(path: Path) -> tuple[Captioner, Vocab]:
    """The trained captioner (eval mode, CPU) and its vocabulary from a checkpoint. Needs no download."""
    ckpt = load_checkpoint(path)
    cfg = DecoderConfig(**ckpt["decoder_config"])
    model = Captioner(cfg, arch=ckpt["encoder_arch"], pretrained=False)
    model.load_state_dict(ckpt["model"])
    return model.eval(), Vocab.from_dict(ckpt["vocab"])
