"""Averaging checkpoints gives the mean weights, loads like any checkpoint, and refuses checkpoints of other runs."""

from pathlib import Path

import pytest
import torch
from captionbot.training.average import average_checkpoints
from captionbot.training.checkpoint import load_captioner, save_checkpoint
from captionbot.training.data import Vocab
from captionbot.training.model import Captioner, DecoderConfig

VOCAB = Vocab(["<pad>", "<start>", "<end>", "<unk>", "a", "dog"])


def _checkpoint(path: Path, seed: int, vocab: Vocab = VOCAB) -> Path:
    torch.manual_seed(seed)
    cfg = DecoderConfig(vocab_size=len(vocab), embed_dim=8, hidden_dim=8, attention_dim=8)
    model = Captioner(cfg, pretrained=False)
    save_checkpoint(path, model=model.state_dict(), decoder_config=cfg.to_dict(), encoder_arch="efficientnet_lite0",
                    vocab=vocab.to_dict(), epoch=seed)
    return path


def test_average_is_the_mean_of_the_weights(tmp_path: Path) -> None:
    a, b = _checkpoint(tmp_path / "a.pt", 1), _checkpoint(tmp_path / "b.pt", 2)
    out = average_checkpoints([a, b], tmp_path / "avg.pt")
    avg, vocab = load_captioner(out)
    wa, wb = (torch.load(p, weights_only=False)["model"]["decoder.lstm.weight_ih"] for p in (a, b))
    assert torch.allclose(avg.decoder.lstm.weight_ih, (wa + wb) / 2)
    assert vocab.itos == VOCAB.itos


def test_checkpoints_of_different_runs_are_refused(tmp_path: Path) -> None:
    other = Vocab([*VOCAB.itos, "cat"])
    a, b = _checkpoint(tmp_path / "a.pt", 1), _checkpoint(tmp_path / "b.pt", 2, other)
    with pytest.raises(ValueError, match="same run"):
        average_checkpoints([a, b], tmp_path / "avg.pt")
