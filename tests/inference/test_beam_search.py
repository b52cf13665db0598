"""Beam search on hand-built decoders whose best captions are known (a word chain: next-word probabilities
depend only on the previous word and on which image it is)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from captionbot.inference.beam_search import BeamOptions, beam_search, greedy_search

PAD, START, END, UNK, A, B, C = range(7)
V = 7
P = 4  # attention grid cells


def chain_step(tables: list[dict[int, dict[int, float]]], calls: list[int] | None = None):
    """A decoder step: log p(next | previous word, image). features[:, 0, 0] holds the image's table index.
    Attention looks at cell (previous word % P), so tests can check which attention went with which word."""

    def step(word, h, c, features, att_proj):
        if calls is not None:
            calls.append(len(word))
        out = np.full((len(word), V), 1e-6)
        for row, (w, table_id) in enumerate(zip(word, features[:, 0, 0].astype(int), strict=True)):
            for nxt, p in tables[table_id].get(int(w), {END: 1.0}).items():
                out[row, nxt] = p
        out /= out.sum(axis=1, keepdims=True)
        alpha = np.eye(P, dtype=np.float32)[word % P]
        return np.log(out).astype(np.float32), h + 1, c, alpha

    return step


def inputs(table_ids: list[int]):
    n = len(table_ids)
    features = np.zeros((n, P, 2), dtype=np.float32)
    features[:, 0, 0] = table_ids
    return features, np.zeros((n, 3), np.float32), np.zeros((n, 3), np.float32), np.zeros((n, P, 2), np.float32)


# <unk> is the likeliest first word, greedy then takes "a" (0.30) and ends with "a c" (p 0.12); the best caption
# is "b" (0.25 * 0.9 = 0.225), which a beam of 2 finds.
GREEDY_TRAP = {START: {UNK: 0.45, A: 0.30, B: 0.25}, A: {C: 0.4, B: 0.3, END: 0.3}, B: {END: 0.9, C: 0.1},
               C: {END: 1.0}}
# Raw sum prefers the short "a" (0.45); per-token mean prefers "b c" (0.3645 over 3 tokens).
SHORT_VS_LONG = {START: {A: 0.5, B: 0.45}, A: {END: 0.9, C: 0.1}, B: {C: 0.9, END: 0.1}, C: {END: 0.9, C: 0.1}}
# Loves repeating "a".
REPEATER = {START: {A: 0.9, B: 0.1}, A: {A: 0.8, B: 0.1, END: 0.1}, B: {A: 0.6, B: 0.2, END: 0.2}}


def search(tables, ids, **opts):
    options = BeamOptions(**{"beam_size": 2, "max_len": 6, **opts})
    return beam_search(chain_step(tables), *inputs(ids), options)


def test_beam_finds_the_best_caption_that_greedy_misses():
    best = search([GREEDY_TRAP], [0])[0]
    assert best.tokens == [B]
    assert best.finished
    assert best.log_prob == pytest.approx(np.log(0.25 * 0.9), abs=1e-4)
    greedy = greedy_search(chain_step([GREEDY_TRAP]), *inputs([0]), BeamOptions(max_len=6))
    assert greedy == [[A, C]]


def test_beam_1_is_greedy():
    tables = [GREEDY_TRAP, SHORT_VS_LONG, REPEATER]
    ids = [0, 1, 2, 1, 0]
    beam1 = search(tables, ids, beam_size=1)
    greedy = greedy_search(chain_step(tables), *inputs(ids), BeamOptions(max_len=6))
    assert [h.tokens for h in beam1] == greedy


def test_unk_is_never_emitted_even_when_likeliest():
    for k in (1, 2, 3):
        assert UNK not in search([GREEDY_TRAP], [0], beam_size=k)[0].tokens


def test_batching_images_gives_the_same_captions_as_one_at_a_time():
    tables = [GREEDY_TRAP, SHORT_VS_LONG, REPEATER]
    ids = [2, 0, 1, 0, 2, 1]
    together = search(tables, ids, beam_size=3)
    alone = [search(tables, [i], beam_size=3)[0] for i in ids]
    assert [h.tokens for h in together] == [h.tokens for h in alone]
    assert [h.log_prob for h in together] == pytest.approx([h.log_prob for h in alone])


def test_finished_beams_leave_the_decoder_batch():
    quick = {START: {A: 0.5, B: 0.3, C: 0.2}}  # every caption ends after one word
    slow = {START: {A: 0.4, B: 0.3, C: 0.3}, A: {A: 0.9, END: 0.1}, B: {B: 0.9, END: 0.1}, C: {C: 0.9, END: 0.1}}
    calls: list[int] = []
    beam_search(chain_step([quick, slow], calls), *inputs([0, 1]), BeamOptions(beam_size=3, max_len=6))
    assert calls[:2] == [2, 6]  # one live hypothesis per image, then three each
    assert max(calls[2:]) <= 3  # the quick image's finished beam no longer costs decoder rows
    assert len(calls) == 7  # the slow image runs to max_len + 1 steps


def test_an_image_stops_as_soon_as_its_best_caption_has_ended():
    # "a" ends with p 0.54 at step 2; every live caption then has a lower score, which further words only lower.
    table = {START: {A: 0.6, B: 0.4}, A: {END: 0.9, C: 0.1}, B: {C: 0.9, END: 0.1}, C: {C: 0.95, END: 0.05}}
    early, full = [], []
    best = beam_search(chain_step([table], early), *inputs([0]), BeamOptions(beam_size=3, max_len=6))[0]
    # a length_alpha too small to change any choice, but it turns the early stop off (the bound needs raw sums)
    same = beam_search(chain_step([table], full), *inputs([0]), BeamOptions(beam_size=3, max_len=6,
                                                                          length_alpha=1e-9))[0]
    assert best.tokens == same.tokens == [A] and best.log_prob == pytest.approx(np.log(0.54), abs=1e-4)
    assert len(early) == 2 and len(full) == 7  # stopped at step 2 instead of running to max_len + 1


def test_length_normalisation_prefers_the_better_mean():
    assert search([SHORT_VS_LONG], [0])[0].tokens == [A]
    assert search([SHORT_VS_LONG], [0], length_alpha=1.0)[0].tokens == [B, C]


def test_repeat_blocking():
    plain = search([REPEATER], [0], beam_size=1, max_len=5)[0].tokens
    assert plain[:2] == [A, A]
    no_twice = search([REPEATER], [0], beam_size=1, max_len=5, block_repeated_word=True)[0].tokens
    assert all(x != y for x, y in itertools.pairwise(no_twice))
    no_bigram = search([REPEATER], [0], beam_size=2, max_len=6, no_repeat_ngram=2)[0].tokens
    bigrams = list(itertools.pairwise(no_bigram))
    assert len(bigrams) == len(set(bigrams))


def test_max_len_cuts_an_endless_caption():
    endless = {START: {A: 1.0}, A: {A: 1.0}}
    hyp = search([endless], [0], max_len=4)[0]
    assert hyp.tokens == [A] * 5  # max_len + 1 steps, as training's search does
    assert not hyp.finished


def test_attention_is_returned_per_word():
    hyp = search([GREEDY_TRAP], [0], beam_size=1)[0]  # "a c"
    assert hyp.alphas.shape == (2, P)
    # the step that emitted word i was fed the previous word, and looked at cell (previous word % P)
    assert hyp.alphas.argmax(axis=1).tolist() == [START % P, A % P]


def test_min_words_forbids_an_empty_caption():
    ends_at_once = {START: {END: 0.9, A: 0.1}, A: {END: 1.0}}
    assert search([ends_at_once], [0])[0].tokens == []  # training's rules allow it
    assert search([ends_at_once], [0], min_words=1)[0].tokens == [A]


def test_rules_on_a_token_array_mask_what_they_mask_row_by_row() -> None:
    """The batched search hands the rules all rows at once as an array; each row must lose exactly the words the
    per-row rules (lists, as greedy search and training pass them) take from it."""
    from captionbot.inference.beam_search import mask_log_probs

    from captionbot.formats import SPECIAL_IDS

    rng = np.random.default_rng(0)
    vocab = 12
    rule_sets = [BeamOptions(block_repeated_word=True, no_repeat_ngram=3, min_words=1,
                             repeatable=frozenset({4, 5})),
                 BeamOptions(no_repeat_ngram=2, min_words=4), BeamOptions(repeatable=frozenset()), BeamOptions()]
    for options, length in itertools.product(rule_sets, range(7)):
        tokens = rng.integers(4, 8, size=(9, length))  # few distinct words: repeats and n-grams come up
        lp = rng.normal(size=(9, vocab))
        by_rows = mask_log_probs(lp.copy(), tokens.tolist(), SPECIAL_IDS, options)
        at_once = mask_log_probs(lp.copy(), tokens, SPECIAL_IDS, options)
        np.testing.assert_array_equal(np.isinf(at_once), np.isinf(by_rows))


def test_top_k_takes_the_best_first_and_the_lower_index_on_ties() -> None:
    from captionbot.inference.beam_search import _top_k

    rng = np.random.default_rng(1)
    table = rng.integers(0, 5, size=(6, 40)).astype(np.float64)  # many ties
    table[0, :] = -np.inf
    table[0, 7] = 1.0
    kept = table.copy()
    for k in (1, 3):
        top, top_val = _top_k(table, k)
        want = np.lexsort((np.broadcast_to(np.arange(40), table.shape), -table), axis=1)[:, :k]
        np.testing.assert_array_equal(top[1:], want[1:])
        np.testing.assert_array_equal(top_val, np.take_along_axis(kept, top, axis=1))
        assert top[0, 0] == 7 and np.isneginf(top_val[0, 1:]).all()
        np.testing.assert_array_equal(table, kept)  # left as it was
