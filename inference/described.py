"""Images -> captions that use the bundle's object labels, with a confidence (bundles with a label head)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from captionbot.inference.beam_search import BeamOptions
from captionbot.inference.bundle import Bundle
from captionbot.inference.confidence import confidence, features, hedged
from captionbot.inference.fused import bundle_fusion, refine_unguided
from captionbot.inference.grammar import fix_articles
from captionbot.inference.guided import SERVED_POLICY, GuidePolicy, article, guide_captions
from captionbot.inference.labels import Label, LabelTable, entropy, mentions

# Labels that say the image is a document, not a scene (screenshots, menus, pages): the caption model only knows
# photos of scenes and describes a chat screenshot as "a little girl in a blue shirt", so such an image is
# described by what it is, and its text is read where a text reader is available. Not "book" or "scoreboard": they
# also top photos of people reading and of stadiums. No Flickr8k or COCO dev photo has one of these as its top
# label at >= 0.2 (bench/results/coco_dev_eval.json), so the dev scores are unchanged.
DOCUMENT_WORDS = frozenset({"screenshot", "menu", "crossword puzzle", "comic book"})
DOCUMENT_MIN_PROB = 0.3
# Text is likely enough to run the text detector when the labels that show text (group "text" in labels.json:
# screenshot, menu, sign, book, comic book, crossword, scoreboard) sum to this: 11 of 15 rendered text images
# (4 of 6 memes over photos missed) and 4 of 288 Flickr8k photos, so photos almost never pay for the detector.
# Chosen on those same images (tests/text_samples.py), not confirmed on others (docs/inference.md).
TEXT_LIKELY_MIN = 0.05


def document_label(labels: list[Label]) -> Label | None:
    """The top label when it says "this is a document" with enough probability, else None."""
    top = labels[0] if labels else None
    return top if top is not None and top.word in DOCUMENT_WORDS and top.prob >= DOCUMENT_MIN_PROB else None


@dataclass
class Description:
    caption: str  # the sentence users see (hedged when confidence is low)
    words: list[str]
    alphas: np.ndarray
    score: float
    confidence: float
    labels: list[tuple[str, float]]
    document: bool = False  # a screenshot, menu or page: its text is worth reading
    text_likely: bool = False  # the labels say the image may show text: worth running the text detector
    # with options.groups > 1: the other different captions (diverse beam search), each (sentence, confidence)
    alternatives: list[tuple[str, float]] = field(default_factory=list)


def describe_arrays(
    bundle: Bundle, table: LabelTable, images: np.ndarray, options: BeamOptions, policy: GuidePolicy = SERVED_POLICY,
    use_lm: bool = True,
) -> list[Description]:
    """Preprocessed images [B,3,H,W] -> one :class:`Description` each (encoder with labels, free beam search,
    guided pass for the images whose confident label the free caption misses, then a second search with the caption
    language models for the other captions the decoder is unsure of, where the bundle has them and ``use_lm``)."""
    from captionbot.inference.captioner import ENCODER_CHUNK, as_sentence, caption_feature_variants

    enc = [bundle.encode_with_labels(images[i : i + ENCODER_CHUNK]) for i in range(0, len(images), ENCODER_CHUNK)]
    feats = np.concatenate([f for f, _ in enc])
    probs = np.concatenate([p for _, p in enc])
    labels = table.top(probs)
    text_likely = table.text_mass(probs) >= TEXT_LIKELY_MIN
    found = caption_feature_variants(bundle, feats, options)
    free = [v[0] for v in found]  # group 0: the caption without groups
    out = []
    ent = entropy(probs)
    single = replace(options, groups=1)
    guided = guide_captions(bundle, feats, free, labels, single, policy)
    guided = refine_unguided(bundle, feats, guided, single, bundle_fusion(bundle) if use_lm else None)
    for g, labs, h, likely, others in zip(guided, labels, ent, text_likely, found, strict=True):
        doc = document_label(labs)
        if doc is not None:
            words = f"{article(doc.word)} {doc.word}".split()
            alphas = np.full((len(words), feats.shape[1]), 1.0 / feats.shape[1], dtype=np.float32)
            out.append(Description(as_sentence(words), words, alphas, g.score, doc.prob,
                                   [(lab.word, round(lab.prob, 4)) for lab in labs], document=True,
                                   text_likely=True))
            continue
        g.words = fix_articles(g.words)  # "a apple", "a broccoli" from a forced phrase or the decoder
        names_top = bool(labs) and mentions(g.words, labs[0].word)
        conf = confidence(features(g.score, labs, float(h), g.label is not None, names_top))
        sentence = hedged(as_sentence(g.words), labs, conf)
        alternatives = []
        for hyp in others[1:]:
            words = [bundle.itos[t] for t in hyp.tokens]
            if words == g.words:
                continue  # the guided pass may have turned the first caption into this one
            alt_conf = confidence(features(hyp.score(1.0), labs, float(h), False,
                                           bool(labs) and mentions(words, labs[0].word)))
            alternatives.append((hedged(as_sentence(words), labs, alt_conf), alt_conf))
        out.append(
            Description(sentence, g.words, g.alphas, g.score, conf, [(lab.word, round(lab.prob, 4)) for lab in labs],
                        text_likely=bool(likely), alternatives=alternatives)
        )
    return out
