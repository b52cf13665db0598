"""Training on real image features: the loss goes down, a tiny model learns its captions, resume is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from captionbot.inference.beam_search import BeamOptions
from captionbot.inference.preprocess import decode_image, to_array
from captionbot.training.checkpoint import load_checkpoint
from captionbot.training.data import END, PAD, UNK, CaptionedImage, tokenize
from captionbot.training.decode import decode
from captionbot.training.features import FeatureCache
from captionbot.training.train import TrainConfig, Trainer, prepare_features


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


def test_the_entropy_penalty_trains_sharper_attention(few_images: list[CaptionedImage], few_features: FeatureCache,
                                                      tmp_path: Path) -> None:
    """`--attention-entropy W` (issue 19): the same run with the penalty ends with clearly sharper maps."""
    ends = {}
    for weight in (0.0, 1.0):
        trainer = Trainer(small_config(tmp_path / str(weight), alpha_c=0.0, attention_entropy_weight=weight),
                          few_images, [], few_features)
        for epoch in range(6):
            trainer.epoch = epoch
            stats = trainer.train_epoch()
        ends[weight] = stats["attention_entropy"]
    assert ends[0.0] > 0.8  # left alone, the maps stay nearly uniform over the 49 regions
    assert ends[1.0] < ends[0.0] - 0.2


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
            greedy = BeamOptions(beam_size=1, max_len=trainer.decoder.cfg.max_len)
            said = [trainer.vocab.decode(h.tokens) for h in decode(trainer.decoder, feats, greedy)]
            if said == wanted:
                break
    assert said == wanted


def test_resume_continues_with_identical_losses(few_images: list[CaptionedImage], few_features: FeatureCache,
                                                tmp_path: Path) -> None:
    kw = dict(epochs=3, dropout=0.5, word_dropout=0.2)  # both dropouts use the random generators
    straight = Trainer(small_config(tmp_path / "straight", **kw), few_images, [], few_features).fit()

    interrupted = Trainer(small_config(tmp_path / "resumed", **kw), few_images, [], few_features)
    interrupted.run_epoch()  # ... and the process dies here
    resumed = Trainer(small_config(tmp_path / "resumed", resume=tmp_path / "resumed" / "last.pt", **kw),
                      few_images, [], few_features)
    assert resumed.epoch == 1
    rest = resumed.fit()
    assert interrupted.step_losses + rest.step_losses == straight.step_losses
    assert len(straight.step_losses) > 6


def test_fine_tuning_trains_only_the_top_encoder_blocks_and_validates_through_them(
        few_images: list[CaptionedImage], tmp_path: Path) -> None:
    cfg = small_config(tmp_path / "run", fine_tune_blocks=1, max_steps_per_epoch=2, batch_size=8, epochs=1,
                       cache_dir=tmp_path / "cache", encoder_lr_scale=1.0)
    below_top, _ = prepare_features(cfg, few_images[:6])
    assert below_top.features.shape[1:] == (49, 192)  # what enters Lite0's last block, not the final features
    trainer = Trainer(cfg, few_images[:4], few_images[4:6], below_top)
    encoder = trainer.model.encoder
    top, low = encoder._blocks[-1], encoder._blocks[0]
    top_before = [p.detach().clone() for p in top.parameters()]
    low_before = [p.detach().clone() for p in low.parameters()]
    trainer.cfg.val_limit = None
    trainer.run_epoch()  # two steps, then validation through the fine-tuned top block
    assert any(not torch.equal(a, b) for a, b in zip(top_before, top.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(low_before, low.parameters(), strict=True))
    assert "val_CIDEr" in trainer.history[-1]
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["encoder_fine_tuned"] is True

    # the validation features are what the whole fine-tuned encoder gives for the image's pixels
    image = few_images[4]
    pixels = torch.from_numpy(to_array(decode_image(image.path.read_bytes(), size=(224, 224)), (224, 224),
                                       encoder.mean, encoder.std))[None]
    with torch.no_grad():
        whole = encoder.eval()(pixels).numpy()[0]
    np.testing.assert_allclose(trainer.validation_features([image.image_id])[0], whole, atol=0.05)


def test_init_from_starts_with_a_checkpoints_weights_and_vocabulary(
        few_images: list[CaptionedImage], few_features: FeatureCache, tmp_path: Path) -> None:
    first = Trainer(small_config(tmp_path / "a", epochs=1), few_images, [], few_features)
    first.fit()
    second = Trainer(small_config(tmp_path / "b", epochs=1, min_count=3, init_from=tmp_path / "a" / "last.pt"),
                     few_images, [], few_features)
    assert second.vocab.itos == first.vocab.itos  # not rebuilt with min_count 3
    for a, b in zip(first.decoder.parameters(), second.decoder.parameters(), strict=True):
        assert torch.equal(a, b)
    assert second.step == 0 and second.epoch == 0


def test_word_dropout_hides_input_words_but_not_the_words_to_predict(
        few_images: list[CaptionedImage], few_features: FeatureCache, tmp_path: Path) -> None:
    trainer = Trainer(small_config(tmp_path, word_dropout=0.5, feature_dropout=0.3), few_images, [], few_features)
    fed: list[torch.Tensor] = []
    trainer.decoder.embedding.register_forward_hook(lambda _m, args, _out: fed.append(args[0]))
    batch = trainer.data.batch(np.arange(16))
    _, ce, _ = trainer.loss(batch)
    inputs, targets = fed[0], batch.captions
    words = (targets != PAD) & (targets != END)
    words[:, 0] = False  # <start> is never hidden
    hidden = (inputs == UNK) & (targets != UNK)
    assert 0.3 < hidden[words].float().mean() < 0.7
    assert not hidden[:, 0].any()
    assert torch.isfinite(ce)  # and the words to predict (``targets``, compared above) were left as they were


def test_the_same_seed_gives_a_bit_identical_checkpoint(few_images: list[CaptionedImage],
                                                        few_features: FeatureCache, tmp_path: Path) -> None:
    def train(name: str, seed: int) -> dict:  # dropout, word and feature dropout all draw from the generators
        cfg = small_config(tmp_path / name, seed=seed, epochs=2, max_steps_per_epoch=3, dropout=0.5,
                           word_dropout=0.2, feature_dropout=0.1)
        Trainer(cfg, few_images, [], few_features).fit()
        return load_checkpoint(tmp_path / name / "last.pt")

    first, again, other = train("first", 1), train("again", 1), train("other", 2)
    assert first["step"] == 6
    for key, value in first["model"].items():
        assert torch.equal(value, again["model"][key]), key
    assert first["optimizer"]["state"].keys() == again["optimizer"]["state"].keys()
    for i, state in first["optimizer"]["state"].items():
        assert all(torch.equal(v, again["optimizer"]["state"][i][k]) for k, v in state.items())
    assert not torch.equal(first["model"]["decoder.embedding.weight"], other["model"]["decoder.embedding.weight"])


def test_init_from_with_an_attention_temperature_fine_tunes_and_saves_the_sharper_decoder(
        few_images: list[CaptionedImage], few_features: FeatureCache, tmp_path: Path) -> None:
    Trainer(small_config(tmp_path / "a", epochs=1), few_images, [], few_features).fit()
    sharp = Trainer(small_config(tmp_path / "b", epochs=1, init_from=tmp_path / "a" / "last.pt",
                                 attention_temperature=0.3), few_images, [], few_features)
    assert sharp.decoder.cfg.attention_temperature == 0.3
    sharp.fit()
    assert load_checkpoint(tmp_path / "b" / "last.pt")["decoder_config"]["attention_temperature"] == 0.3


def test_no_shared_context_is_refused_for_an_encoder_without_a_global_vector(
        few_images: list[CaptionedImage], few_features: FeatureCache, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no-shared-context needs an encoder with a global vector"):
        Trainer(small_config(tmp_path, no_shared_context=True), few_images, [], few_features)


def test_global_dropout_hides_the_whole_global_vector_of_some_images_and_never_the_local_cells(
        few_images: list[CaptionedImage], few_features: FeatureCache, tmp_path: Path) -> None:
    from captionbot.training.train import hide_global

    torch.manual_seed(0)
    feats = torch.rand(64, 49, 112 + 1280) + 0.5
    out = hide_global(feats, 1280, 0.5)
    assert torch.equal(out[:, :, :112], feats[:, :, :112])  # local cells: untouched
    hidden = (out[:, :, 112:] == 0).all(2).all(1)  # per image: the global part is all gone ...
    kept = torch.isclose(out[:, :, 112:], feats[:, :, 112:]).all(2).all(1)  # ... or all there, in every cell
    assert bool((hidden ^ kept).all())
    assert 16 < int(hidden.sum()) < 48
    assert torch.equal(hide_global(feats, 1280, 0.0), feats)
    with pytest.raises(ValueError, match="global-dropout needs an encoder with a global vector"):
        Trainer(small_config(tmp_path, global_dropout=0.5), few_images, [], few_features)
