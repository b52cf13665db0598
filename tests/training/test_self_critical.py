"""Self-critical fine-tuning: its reward is pycocoevalcap's CIDEr-D, its samples are well-formed, and a run on real
images writes a checkpoint that loads and never does worse on validation than where it started."""

from pathlib import Path

import torch
from captionbot.training.checkpoint import load_captioner, save_checkpoint
from captionbot.training.data import END, UNK, CaptionedImage, Vocab, tokenize
from captionbot.training.features import FeatureCache
from captionbot.training.model import Captioner, DecoderConfig
from captionbot.training.self_critical import CorpusCider, SelfCriticalConfig, sample_captions, self_critical
from pycocoevalcap.cider.cider import Cider

REFS = {
    "1": ["a dog runs on the grass", "a brown dog running through a field", "the dog is running"],
    "2": ["two children play in the snow", "kids playing in snow", "two kids in the snow"],
    "3": ["a man rides a bike down a street", "a cyclist on a city street", "a man on a bicycle"],
}


def test_reward_equals_pycocoevalcap_cider_on_the_same_corpus() -> None:
    hyps = {"1": "a dog running on grass", "2": "two kids play in the snow", "3": "a man on a street"}
    _, per_image = Cider().compute_score(REFS, {k: [v] for k, v in hyps.items()})
    scorer = CorpusCider(list(REFS.values()))
    ours = [scorer.score(hyps[k], REFS[k]) for k in REFS]
    assert all(abs(a - b) < 1e-12 for a, b in zip(ours, per_image, strict=True))
    assert scorer.score(REFS["1"][0], REFS["1"]) > scorer.score("snow snow snow", REFS["1"])


def test_sampled_captions_end_properly_and_never_use_unk() -> None:
    torch.manual_seed(0)
    dec = Captioner(DecoderConfig(vocab_size=12, embed_dim=8, hidden_dim=8, attention_dim=8), pretrained=False).decoder
    tokens, logp = sample_captions(dec, torch.randn(4, 49, 1280), k=3, max_len=6)
    assert tokens.shape[0] == 12 and torch.isfinite(logp).all() and (logp <= 0).all()
    assert not (tokens == UNK).any()
    for row in tokens.tolist():
        if END in row:  # nothing after <end>
            assert all(t == 0 for t in row[row.index(END) + 1 :])


def _tiny_checkpoint(path: Path, images: list[CaptionedImage]) -> Path:
    torch.manual_seed(0)
    vocab = Vocab.build((tokenize(c) for im in images for c in im.captions), min_count=1)
    cfg = DecoderConfig(vocab_size=len(vocab), embed_dim=32, hidden_dim=32, attention_dim=32, max_len=12)
    model = Captioner(cfg, pretrained=False)
    save_checkpoint(path, model=model.state_dict(), decoder_config=cfg.to_dict(), encoder_arch="efficientnet_lite0",
                    vocab=vocab.to_dict())
    return path


def test_a_run_writes_a_loadable_best_checkpoint(few_images: list[CaptionedImage], few_features: FeatureCache,
                                                 tmp_path: Path) -> None:
    ckpt = _tiny_checkpoint(tmp_path / "xe.pt", few_images)
    best = self_critical(ckpt, few_images[:8], few_images[8:], few_features, tmp_path / "scst",
                         SelfCriticalConfig(epochs=2, lr=1e-3, batch_images=4, samples=3, beam=2,
                                            val_every=1, val_limit=3))
    model, vocab = load_captioner(best)
    start, after = (torch.load(p, weights_only=False) for p in (best, tmp_path / "scst" / "scst-epoch2.pt"))
    assert (tmp_path / "scst" / "scst-epoch1.pt").is_file()
    assert start["scst"]["dev_CIDEr"] >= after["scst"]["dev_CIDEr"]  # the best is kept, never a worse epoch
    assert len(vocab) == model.decoder.cfg.vocab_size
