"""A second look, with the caption language models, at the captions the decoder is unsure of.

The decoder learnt its English from 6,000 Flickr8k photos (people and dogs outdoors); users post kitchens, food,
streets and animals. For an image whose free caption the decoder is unsure of (mean log-prob per token at most the
policy's ``lm_max_free_score``) and that no object label started (``inference/guided.py`` runs first: a caption
that starts "a polar bear" is kept), the batched beam search runs again with ``lm_weight`` × log(p_target / p_source)
added at every step (``inference/caption_lm.py``: COCO caption text over Flickr8k train captions), which moves
the phrasing toward how people describe such photos ("a kitchen with a stove and a sink") while the decoder's
image evidence still decides. Captions the decoder is sure of (most Flickr8k-like photos) are kept as they are,
so they cost nothing more. Chosen on half A of both dev sets, confirmed on half B (``bench/lm_fusion_eval.py``,
docs/model.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from captionbot.inference.beam_search import BeamOptions
from captionbot.inference.bundle import Bundle
from captionbot.inference.guided import Guided


@dataclass(frozen=True)
class Fusion:
    """When and how strongly the language models join the search."""

    weight: float  # lm_weight: the log-ratio's weight at every step
    max_free_score: float  # only for a free caption whose mean log-prob per token is at most this


def bundle_fusion(bundle: Bundle) -> Fusion | None:
    """The bundle's fusion rules from its decoding policy; None when it has no language model or weight 0."""
    policy = bundle.manifest.decoding
    if bundle.lm is None or policy is None or policy.lm_weight <= 0:
        return None
    return Fusion(policy.lm_weight, policy.lm_max_free_score)


def refine_unguided(
    bundle: Bundle, feats: np.ndarray, guided: list[Guided], options: BeamOptions, fusion: Fusion | None
) -> list[Guided]:
    """``guided`` (after the label-guided pass) with each caption that no label started and whose free caption
    the decoder is unsure of replaced by the fused search's (one batched search over them). A caption a label
    started is kept: the label names what is there, and the fused search would not start from it."""
    from captionbot.inference.captioner import caption_features

    if fusion is None or bundle.lm is None:
        return guided
    todo = [i for i, g in enumerate(guided) if g.label is None and g.free_score <= fusion.max_free_score]
    if not todo:
        return guided
    fused = replace(options, lm=bundle.lm.next_log_ratio, lm_weight=fusion.weight)
    for i, hyp in zip(todo, caption_features(bundle, feats[todo], fused), strict=True):
        # the score stays the free caption's: confidence (inference/confidence.py) reads how sure the decoder is
        # about the image; the rephrased wording is by design less likely under the decoder alone, and scoring it
        # hedged 16 of 107 COCO dev captions instead of 4 (COCO CIDEr as users get it 0.450 instead of 0.5)
        guided[i].words, guided[i].alphas = [bundle.itos[t] for t in hyp.tokens], hyp.alphas
    return guided
