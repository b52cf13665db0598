"""A bundle's decoding policy (``Manifest.decoding``) -> the beam-search options the runtime decodes with.

The policy travels with the model: export writes it into the manifest, the runtime reads it from there, so a model
trained on another vocabulary or language brings its own rules. A policy naming words its vocabulary lacks is a
:class:`BundleError`. A bundle exported before policies existed has none: if its vocabulary holds every word of
the English served policy it gets that policy (what such bundles were served with), otherwise the
language-neutral served rules (no word list); either way a log line says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from captionbot.inference.beam_search import BeamOptions

from captionbot.formats import BundleError, DecodingPolicy, Manifest

log = logging.getLogger(__name__)

# Words an English caption may use more than once ("a man in a red shirt and a woman in a blue shirt"); any other
# word appears at most once in a served caption.
ENGLISH_REPEATABLE_WORDS = (
    "a", "an", "the", "in", "on", "of", "with", "and", "is", "are", "at", "to", "into", "for", "from", "by", "his",
    "her", "their", "its", "while", "as", "up", "down", "out", "over", "under", "near", "next", "front", "through",
    "behind", "one", "some", "other", "each", "another",
)

# The served rules without a word list: never an empty caption, never a word twice in a row, never a word trigram
# twice; the final choice among finished captions by mean log-probability per token (``length_alpha=1``) rather
# than the raw sum, which favours short captions. length_alpha was chosen on the first 500 Flickr8k dev images
# (alpha 0 / 0.5 / 1 / 1.5 / 2 at beam 3: CIDEr 0.560 / 0.555 / 0.564 / 0.558 / 0.550) and confirmed on the other
# 500 (0.526 -> 0.560 from alpha 0 to 1); docs/model.md.
SERVED_RULES = DecodingPolicy(min_words=1, block_repeated_word=True, no_repeat_ngram=3, length_alpha=1.0)
# ... plus no content word twice ("a dog and a dog"): the policy of the English models (models/default).
ENGLISH_SERVED_POLICY = replace(SERVED_RULES, repeatable_words=ENGLISH_REPEATABLE_WORDS)
EVALUATED_RULES = DecodingPolicy()  # plain beam search: what evaluation scores are measured with

NAMED_POLICIES = {"english-served": ENGLISH_SERVED_POLICY, "served-rules": SERVED_RULES,
                  "evaluated": EVALUATED_RULES}


def check_policy(policy: DecodingPolicy, itos: Sequence[str]) -> None:
    """Raise :class:`BundleError` if ``policy`` names words that ``itos`` lacks, or has impossible values."""
    if policy.beam_size < 1 or policy.min_words < 0 or policy.no_repeat_ngram < 0 or policy.lm_weight < 0:
        raise BundleError(f"decoding policy has impossible values: {policy}")
    if policy.repeatable_words is not None:
        vocab = set(itos)
        missing = sorted(w for w in policy.repeatable_words if w not in vocab)
        if missing:
            raise BundleError(f"decoding policy names words the vocabulary lacks: {missing[:10]}"
                              f"{' …' if len(missing) > 10 else ''} ({len(missing)} of {len(policy.repeatable_words)})")


def bundle_policy(manifest: Manifest, itos: Sequence[str]) -> DecodingPolicy:
    """The manifest's policy, checked against the vocabulary; for a bundle that predates policies, see above."""
    if manifest.decoding is not None:
        check_policy(manifest.decoding, itos)
        return manifest.decoding
    vocab = set(itos)
    if all(w in vocab for w in ENGLISH_REPEATABLE_WORDS):
        log.info("bundle %s predates decoding policies; its vocabulary is English: serving the English policy",
                 manifest.model_version)
        return ENGLISH_SERVED_POLICY
    log.warning("bundle %s predates decoding policies and its vocabulary is not the English one: serving the "
                "served rules without a repeatable-word list", manifest.model_version)
    return SERVED_RULES


def beam_options(
    policy: DecodingPolicy, itos: Sequence[str], max_len: int, beam_size: int | None = None
) -> BeamOptions:
    """The search options for ``policy`` over vocabulary ``itos`` (``beam_size`` overrides the policy's)."""
    repeatable = None
    if policy.repeatable_words is not None:
        words = set(policy.repeatable_words)
        repeatable = frozenset(i for i, w in enumerate(itos) if w in words)
    return BeamOptions(
        beam_size=policy.beam_size if beam_size is None else beam_size,
        max_len=max_len,
        length_alpha=policy.length_alpha,
        block_repeated_word=policy.block_repeated_word,
        no_repeat_ngram=policy.no_repeat_ngram,
        min_words=policy.min_words,
        repeatable=repeatable,
    )
