"""Scores match what pycocoevalcap prints for the same toy captions, and SPICE says why it is missing."""

from __future__ import annotations

import pytest
from captionbot.training.metrics import score_captions

REFS = {
    "1": ["A dog runs across the grass.", "A brown dog is running on a lawn.", "The dog plays outside."],
    "2": ["Two children play on the beach.", "Kids are playing in the sand near the sea.", "Two kids at the beach."],
    "3": ["A man rides a bike down the street.", "A cyclist on a city road.", "A man is riding his bicycle."],
}
CANDIDATES = {"1": "a dog runs on the grass", "2": "two children are playing on the beach", "3": "a man riding a horse"}

# Printed by pycocoevalcap 1.2 itself (PTBTokenizer, then Bleu(4), Meteor(), Rouge(), Cider()) for the input above.
PRINTED_BY_PYCOCOEVALCAP = {
    "Bleu_1": 0.9444444443395061,
    "Bleu_2": 0.7097208631470354,
    "Bleu_3": 0.43786607467040667,
    "Bleu_4": 5.526438558827392e-05,
    "METEOR": 0.41085149682040123,
    "ROUGE_L": 0.7166804585746918,
    "CIDEr": 1.7293808106028556,
}


def test_scores_equal_what_pycocoevalcap_prints() -> None:
    scores, notes = score_captions(REFS, CANDIDATES)
    for name, expected in PRINTED_BY_PYCOCOEVALCAP.items():
        assert scores[name] == pytest.approx(expected, rel=1e-9), name
    assert scores["SPICE"] is None
    assert "SPICE unavailable" in notes["SPICE"] and "Stanford CoreNLP" in notes["SPICE"]


def test_a_perfect_caption_scores_higher_than_a_wrong_one() -> None:
    good, _ = score_captions(REFS, {k: v[0] for k, v in REFS.items()}, metrics=("CIDEr",))
    bad, _ = score_captions(REFS, {k: "red cars parked in garages" for k in REFS}, metrics=("CIDEr",))
    assert good["CIDEr"] > 1.0 > 0.05 > bad["CIDEr"]


def test_candidates_without_references_are_refused() -> None:
    with pytest.raises(ValueError, match="no references"):
        score_captions(REFS, {**CANDIDATES, "4": "a cat"}, metrics=("CIDEr",))
