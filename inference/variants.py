"""More than one caption of an image: the decoding options that ask the one beam search for ``n`` different
captions (diverse beam search: ``inference/beam_search.py``, ``BeamOptions.groups`` and ``diversity``).

Each variant is a group of ``beam_size`` hypotheses; group 0 is unpenalised, so the first variant is always the
caption a user gets without variants. ``DIVERSITY`` (λ) was chosen on half A of the Flickr8k dev split and
confirmed on half B (``bench/variants.py``, docs/model.md "More than one caption").
"""

from __future__ import annotations

from dataclasses import replace

from captionbot.inference.beam_search import BeamOptions

from captionbot.formats import MAX_VARIANTS, MIN_VARIANTS

DIVERSITY = 1.0  # λ: the Hamming penalty per earlier group's choice of the same word at the same step


def variant_options(options: BeamOptions, variants: int, diversity: float = DIVERSITY) -> BeamOptions:
    """``options`` asking for up to ``variants`` different captions (1: ``options`` unchanged)."""
    if not MIN_VARIANTS <= variants <= MAX_VARIANTS:
        raise ValueError(f"variants must be {MIN_VARIANTS}..{MAX_VARIANTS}, not {variants}")
    return options if variants == 1 else replace(options, groups=variants, diversity=diversity)
