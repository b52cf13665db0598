"""Training on real image features: the loss goes down, a tiny model learns its captions, resume is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from training.beam_search import greedy_decode
from training.checkpoint import load_checkpoint
from training.data import CaptionedImage, tokenize
from training.features import FeatureCache
from training.train import TrainConfig, Trainer


def small_config(out: Path, **kw) -> TrainConfig:
    base = dict(out_dir=out, embed_dim=64, hidden_dim=96, attention_dim=48, dropout=0.0, min_count=1, batch_size=16,
                lr=3e-3, warmup_steps=1, weight_decay=0.0, val_limit=0, progress=False, epochs=50)
    base.update(kw)
    return TrainConfig(**base)


def test_a_few_steps_lower_the_loss(few_images: list[CaptionedImage], few_features: FeatureCache,
                                    tmp_path: Path) -> None:
    trainer = Trainer(small_config(tmp_path, dropout=0.5, alpha_c=1.0), few_images, [], few_features)
    first = trainer.train_epoch()["loss"]
    for _ in range(4):
        trainer.epoch += 1
        last = trainer.train_epoch()["loss"]
    assert np.isfinite(first) and last < first - 0.5
    assert first < np.log(len(trainer.vocab)) + 1.0  # a sane start: about ln(vocab), not hundreds


def test_a_tiny_model_overfits_eight_images_until_greedy_says_their_captions(
    few_images: list[CaptionedImage], few_features: FeatureCache, tmp_path: Path
) -> None:
    # one caption per image (its shortest), so there is one right answer to learn
    images = [CaptionedImage(im.path, [min(im.captions, key=lambda c: len(tokenize(c)))], im.split)
              for im in few_images[:8]]
    trainer = Trainer(small_config(tmp_path, alpha_c=0.0, epochs=400), images, [], few_features)
    feats = torch.from_numpy(few_features.get([im.image_id for im in images]))
    wanted = [tokenize(im.captions[0]) for im in images]
    said: list[list[str]] = []
    for epoch in range(400):
        trainer.epoch = epoch
        trainer.train_epoch()
        if epoch % 10 == 9:
            trainer.decoder.eval()
            said = [trainer.vocab.decode(t) for t in greedy_decode(trainer.decoder, feats)]
            if said == wanted:
                break
    assert said == wanted


def test_resume_continues_with_identical_losses(few_images: list[CaptionedImage], few_features: FeatureCache,
                                                tmp_path: Path) -> None:
    kw = dict(epochs=3, dropout=0.5, scheduled_sampling=0.5)  # dropout and sampling use the random generators
    straight = Trainer(small_config(tmp_path / "straight", **kw), few_images, [], few_features).fit()

    interrupted = Trainer(small_config(tmp_path / "resumed", **kw), few_images, [], few_features)
    interrupted.run_epoch()  # ... and the process dies here
    resumed = Trainer(small_config(tmp_path / "resumed", resume=tmp_path / "resumed" / "last.pt", **kw),
                      few_images, [], few_features)
    assert resumed.epoch == 1
    rest = resumed.fit()
    assert interrupted.step_losses + rest.step_losses == straight.step_losses
    assert len(straight.step_losses) > 6


def test_fine_tuning_trains_only_the_top_encoder_blocks(few_images: list[CaptionedImage], few_features: FeatureCache,
                                                         tmp_path: Path) -> None:
    trainer = Trainer(small_config(tmp_path, fine_tune_blocks=1, max_steps_per_epoch=2, batch_size=8, epochs=1),
                      few_images[:4], few_images[4:6], few_features)
    blocks = trainer.model.encoder._blocks
    top, low = blocks[-1], blocks[0]
    top_before = [p.detach().clone() for p in top.parameters()]
    low_before = [p.detach().clone() for p in low.parameters()]
    trainer.cfg.val_limit = None
    trainer.run_epoch()  # two steps on pixels, then validation through the fine-tuned encoder
    assert any(not torch.equal(a, b) for a, b in zip(top_before, top.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(low_before, low.parameters(), strict=True))
    assert "val_CIDEr" in trainer.history[-1]
    assert load_checkpoint(tmp_path / "last.pt")["encoder_fine_tuned"] is True
