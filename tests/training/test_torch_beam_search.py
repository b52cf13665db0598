"""Beam search over real image features: greedy at beam 1, best-first beams with honest scores, no <unk>."""

from __future__ import annotations

import numpy as np
import torch
from captionbot.training.beam_search import END, START, UNK, beam_search, greedy_decode
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


def replay_score(dec: Decoder, feats: torch.Tensor, tokens: list[int]) -> float:
    """Sum of log-probabilities of ``tokens`` for one image, stepping the decoder word by word."""
    h, c, proj = dec.init_state(feats[None])
    word, total = torch.tensor([START]), 0.0
    with torch.no_grad():
        for t in tokens:
            log_probs, h, c, _ = dec.step(word, h, c, feats[None], proj)
            total += float(log_probs[0, t])
            word = torch.tensor([t])
    return total


def test_beam_size_one_is_greedy(few_features: FeatureCache) -> None:
    dec, feats = make_decoder(), real_features(few_features)
    beams = beam_search(dec, feats, beam_size=1)
    assert [b[0].tokens for b in beams] == greedy_decode(dec, feats)


def test_beams_come_out_best_first_with_the_scores_of_their_words(few_features: FeatureCache) -> None:
    dec, feats = make_decoder(), real_features(few_features)
    results = beam_search(dec, feats, beam_size=4)
    distinct = 0
    for b, hyps in enumerate(results):
        assert len(hyps) == 4
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        for h in hyps:
            assert abs(replay_score(dec, feats[b], h.tokens) - h.score) < 1e-3
            assert h.alphas.shape == (len(h.tokens), feats.size(1))
        distinct += len({tuple(h.tokens) for h in hyps}) == 4
    assert distinct == len(results)
    # a wider beam never finds a worse best caption than greedy
    greedy = beam_search(dec, feats, beam_size=1)
    assert all(r[0].score >= g[0].score - 1e-5 for r, g in zip(results, greedy, strict=True))


def test_unk_is_never_emitted_even_when_it_is_the_likeliest_word(few_features: FeatureCache) -> None:
    dec, feats = make_decoder(), real_features(few_features)
    with torch.no_grad():
        dec.out.bias[UNK] += 50.0
    for hyps in beam_search(dec, feats, beam_size=3):
        assert all(UNK not in h.tokens for h in hyps)
    assert all(UNK not in t for t in greedy_decode(dec, feats))


def test_no_repeat_stops_a_word_following_itself(few_features: FeatureCache) -> None:
    dec, feats = make_decoder(), real_features(few_features)
    with torch.no_grad():
        dec.out.bias[7] += 30.0  # word 7 is by far the likeliest at every step
    plain = beam_search(dec, feats, beam_size=2)
    assert any(h.tokens[:3] == [7, 7, 7] for hyps in plain for h in hyps)
    for hyps in beam_search(dec, feats, beam_size=2, no_repeat=True):
        for h in hyps:
            assert all(a != b for a, b in zip(h.tokens, h.tokens[1:], strict=False))


def test_captions_stop_at_end_or_max_len(few_features: FeatureCache) -> None:
    dec, feats = make_decoder(), real_features(few_features)
    for hyps in beam_search(dec, feats, beam_size=3, max_len=5):
        for h in hyps:
            assert len(h.tokens) <= 6
            assert END not in h.tokens[:-1]
    with torch.no_grad():
        dec.out.bias[END] += 50.0
    assert all(h[0].tokens == [END] for h in beam_search(dec, feats, beam_size=3))
    assert np.all([t == [END] for t in greedy_decode(dec, feats)])
