"""The one beam search over the PyTorch decoder step, on real image features: greedy at beam 1, honest scores,
no <unk>, the repeat rule, and the length limits."""

from __future__ import annotations

import torch
from captionbot.inference.beam_search import BeamOptions, greedy_search
from captionbot.training.data import START, UNK
from captionbot.training.decode import decode, torch_step
from captionbot.training.features import FeatureCache
from captionbot.training.model import Decoder, DecoderConfig


def make_decoder(seed: int = 0, vocab: int = 40) -> Decoder:
    torch.manual_seed(seed)
    dec = Decoder(DecoderConfig(vocab_size=vocab, embed_dim=32, hidden_dim=48, attention_dim=24, dropout=0.0,
                                max_len=12))
    with torch.no_grad():  # peakier distributions than the N(0,1)-tied default, so beams really differ
        dec.embedding.weight.mul_(0.3)
    return dec.eval()


def real_features(cache: FeatureCache) -> torch.Tensor:
    return torch.from_numpy(cache.get(sorted(cache.index)))


def replay_score(dec: Decoder, feats: torch.Tensor, tokens: list[int], end: int | None) -> float:
    """Sum of log-probabilities of ``tokens`` (then ``end``) for one image, stepping the decoder word by word."""
    h, c, proj = dec.init_state(feats[None])
    word, total = torch.tensor([START]), 0.0
    with torch.no_grad():
        for t in [*tokens, *([end] if end is not None else [])]:
            log_probs, h, c, _ = dec.step(word, h, c, feats[None], proj)
            total += float(log_probs[0, t])
            word = torch.tensor([t])
    return total


def options(**kw) -> BeamOptions:
    return BeamOptions(**{"beam_size": 3, "max_len": 12, **kw})


def test_beam_size_one_is_greedy(few_features: FeatureCache) -> None:
    dec, feats = make_decoder(), real_features(few_features)
    with torch.no_grad():
        h, c, proj = dec.init_state(feats)
        greedy = greedy_search(torch_step(dec), feats, h, c, proj, options(beam_size=1))
    assert [hyp.tokens for hyp in decode(dec, feats, options(beam_size=1))] == greedy


def test_captions_carry_the_scores_of_their_words_and_a_wider_beam_is_never_worse(few_features) -> None:
    dec, feats = make_decoder(), real_features(few_features)
    best = decode(dec, feats, options(beam_size=4))
    for b, hyp in enumerate(best):
        replay = replay_score(dec, feats[b], hyp.tokens, 2 if hyp.finished else None)
        assert abs(replay - hyp.log_prob) < 1e-3
        assert hyp.alphas.shape == (len(hyp.tokens), feats.size(1))
    greedy = decode(dec, feats, options(beam_size=1))
    assert all(r.log_prob >= g.log_prob - 1e-5 for r, g in zip(best, greedy, strict=True))


def test_unk_is_never_emitted_even_when_it_is_the_likeliest_word(few_features: FeatureCache) -> None:
    dec, feats = make_decoder(), real_features(few_features)
    with torch.no_grad():
        dec.out.bias[UNK] += 50.0
    for k in (1, 3):
        assert all(UNK not in hyp.tokens for hyp in decode(dec, feats, options(beam_size=k)))


def test_no_repeat_stops_a_word_following_itself(few_features: FeatureCache) -> None:
    dec, feats = make_decoder(), real_features(few_features)
    with torch.no_grad():
        dec.out.bias[7] += 30.0  # word 7 is by far the likeliest at every step
    assert any(hyp.tokens[:3] == [7, 7, 7] for hyp in decode(dec, feats, options(beam_size=2)))
    for hyp in decode(dec, feats, options(beam_size=2, block_repeated_word=True)):
        assert all(a != b for a, b in zip(hyp.tokens, hyp.tokens[1:], strict=False))


def test_captions_stop_at_end_or_max_len(few_features: FeatureCache) -> None:
    dec, feats = make_decoder(), real_features(few_features)
    assert all(len(hyp.tokens) <= 6 for hyp in decode(dec, feats, options(max_len=5)))
    with torch.no_grad():
        dec.out.bias[2] += 50.0  # <end>
    assert all(hyp.tokens == [] and hyp.finished for hyp in decode(dec, feats, options()))
