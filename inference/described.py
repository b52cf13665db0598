"""Images -> captions that use the bundle's object labels, with a confidence (bundles with a label head)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from captionbot.inference.beam_search import BeamOptions
from captionbot.inference.bundle import Bundle
from captionbot.inference.confidence import confidence, features, hedged
from captionbot.inference.guided import SERVED_POLICY, GuidePolicy, guide_captions
from captionbot.inference.labels import LabelTable, entropy, mentions


@dataclass
class Description:
    caption: str  # the sentence users see (hedged when confidence is low)
    words: list[str]
    alphas: np.ndarray
    score: float
    confidence: float
    labels: list[tuple[str, float]]


def describe_arrays(
    bundle: Bundle, table: LabelTable, images: np.ndarray, options: BeamOptions, policy: GuidePolicy = SERVED_POLICY
) -> list[Description]:
    """Preprocessed images [B,3,H,W] -> one :class:`Description` each (encoder with labels, free beam search,
    guided second pass for the images whose confident label the free caption misses)."""
    from captionbot.inference.captioner import ENCODER_CHUNK, as_sentence, caption_features

    enc = [bundle.encode_with_labels(images[i : i + ENCODER_CHUNK]) for i in range(0, len(images), ENCODER_CHUNK)]
    feats = np.concatenate([f for f, _ in enc])
    probs = np.concatenate([p for _, p in enc])
    labels = table.top(probs)
    free = caption_features(bundle, feats, options)
    out = []
    ent = entropy(probs)
    for g, labs, h in zip(guide_captions(bundle, feats, free, labels, options, policy), labels, ent, strict=True):
        names_top = bool(labs) and mentions(g.words, labs[0].word)
        conf = confidence(features(g.score, labs, float(h), g.label is not None, names_top))
        sentence = hedged(as_sentence(g.words), labs, conf)
        out.append(
            Description(sentence, g.words, g.alphas, g.score, conf, [(lab.word, round(lab.prob, 4)) for lab in labs])
        )
    return out
