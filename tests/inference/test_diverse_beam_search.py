"""Diverse beam search (groups with a Hamming diversity penalty) on the hand-built word-chain decoders of
test_beam_search: group 0 is the plain beam search's caption, later groups are pushed to other words, scores stay
true log-probabilities, and no caption is given twice."""

from __future__ import annotations

import numpy as np
import pytest
from captionbot.inference.beam_search import BeamOptions, beam_search, beam_search_variants
from test_beam_search import END, GREEDY_TRAP, REPEATER, SHORT_VS_LONG, START, A, B, C, chain_step, inputs

# The likeliest captions start with "a": "a b" (0.3), "a c" (0.24); the best without "a" is "b" (0.25), then
# "c b" (0.15 * 0.9).
SAME_START = {START: {A: 0.6, B: 0.25, C: 0.15}, A: {B: 0.5, C: 0.4, END: 0.1}, B: {END: 1.0}, C: {B: 0.9, END: 0.1}}
TABLES = [GREEDY_TRAP, SHORT_VS_LONG, REPEATER, SAME_START]


def variants(ids, **opts):
    options = BeamOptions(**{"beam_size": 2, "max_len": 6, **opts})
    return beam_search_variants(chain_step(TABLES), *inputs(ids), options)


def log_prob(table, tokens):
    """The true log-probability of a finished caption under a chain table (the decoder's 1e-6 floor aside)."""
    total, prev = 0.0, START
    for tok in [*tokens, END]:
        total += np.log(table[prev][tok])
        prev = tok
    return total


def test_the_first_variant_is_the_plain_beam_search_caption_for_every_image_in_a_batch():
    ids = [0, 1, 2, 3, 3, 0]
    plain = beam_search(chain_step(TABLES), *inputs(ids), BeamOptions(beam_size=2, max_len=6))
    for groups, diversity in ((1, 0.0), (2, 0.5), (3, 5.0)):
        first = [v[0] for v in variants(ids, groups=groups, diversity=diversity)]
        assert [h.tokens for h in first] == [h.tokens for h in plain]
        assert [h.log_prob for h in first] == pytest.approx([h.log_prob for h in plain])


def test_the_penalty_pushes_later_groups_to_other_words_and_scores_stay_true():
    [found] = variants([3], beam_size=1, groups=3, diversity=5.0)
    assert [h.tokens for h in found] == [[A, B], [B], [C, B]], "each group starts with a word no earlier group chose"
    for h in found:
        assert h.finished
        assert h.log_prob == pytest.approx(log_prob(SAME_START, h.tokens), abs=1e-4), "no penalty in the score"


def test_without_a_penalty_the_groups_agree_and_the_same_caption_is_not_given_twice():
    [found] = variants([3], beam_size=1, groups=3, diversity=0.0)
    assert [h.tokens for h in found] == [[A, B]], "up to three: identical captions are given once"
    [found] = variants([3], beam_size=2, groups=3, diversity=0.0)
    tokens = [h.tokens for h in found]
    assert tokens == [[A, B], [B]], "the second group falls back to its next best; the third has nothing new"


def test_a_small_penalty_changes_less_than_a_large_one():
    mild = variants([3], beam_size=1, groups=2, diversity=0.1)[0]
    strong = variants([3], beam_size=1, groups=2, diversity=5.0)[0]
    assert [h.tokens for h in mild] == [[A, B]], "0.6 - 0.1 still beats 0.3: the second group agrees, given once"
    assert [h.tokens for h in strong] == [[A, B], [B]]


def test_groups_must_be_at_least_one():
    with pytest.raises(ValueError, match="groups must be >= 1"):
        variants([0], groups=0)
