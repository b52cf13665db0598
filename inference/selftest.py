"""The worker's readiness self-test: caption a built-in test image and check that the result is a sentence the model
meant, before the worker serves anyone.

A bundle can pass every hash, bound and shape check and still be broken: ``max_len`` too short for its model cuts
every caption ("A man with a."), random or mis-loaded weights give word salad. The checks are about the model,
never about particular words, so a retrained model (or one in another language) passes without a stored answer:

- the caption **ended** with ``<end>`` by the model's choice, not cut at ``max_len``;
- it has at least :data:`MIN_WORDS` words and no special token (``<unk>``, ``<pad>``);
- the model is **confident** in it: mean log-probability per token at least half of ``log(1 / vocab size)``, i.e.
  a geometric-mean word probability of at least ``1 / sqrt(V)``. The shipped model scores -1.5 on the test image
  (the floor there is -3.9); a model that guesses words at random scores about ``log(1 / V)``;
- the served path (policy, labels, heatmap) gives a non-empty caption and a heatmap.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace

from captionbot.inference.captioner import Captioner, caption_arrays
from PIL import Image, ImageDraw

from captionbot.formats import SPECIAL_TOKENS, ImageRejected

MIN_WORDS = 3


class SelfTestFailed(RuntimeError):
    """The model's caption of the built-in test image is not a plausible sentence (the message says why)."""


@dataclass(frozen=True)
class SelfTestResult:
    caption: str  # what users would get for the test image
    decoded: str  # the decoder's own words under the bundle's policy
    mean_log_prob: float


def builtin_image() -> bytes:
    """PNG of the built-in test image: sky over a green field, a red square (what the shipped model calls "a man in
    a red shirt ... in the background")."""
    image = Image.new("RGB", (320, 240), (90, 150, 220))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 160, 320, 240), fill=(60, 160, 70))
    draw.rectangle((130, 100, 190, 160), fill=(200, 40, 40))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def confidence_floor(vocab_size: int) -> float:
    """The lowest mean log-probability per token a working model may give its test-image caption."""
    return -0.5 * math.log(max(vocab_size, 2))


def check_decoded(words: list[str], finished: bool, mean_log_prob: float, vocab_size: int, max_len: int) -> list[str]:
    """What is wrong with the decoder's test-image caption (empty: nothing)."""
    problems = []
    if not finished:
        problems.append(f"the caption was cut at max_len {max_len} words instead of ending")
    if len(words) < MIN_WORDS:
        problems.append(f"{len(words)} words (at least {MIN_WORDS} expected)")
    if specials := sorted({w for w in words if w in SPECIAL_TOKENS}):
        problems.append(f"special tokens in the caption {specials}")
    if not mean_log_prob >= confidence_floor(vocab_size):
        problems.append(f"the model is not confident in it (mean log-probability {mean_log_prob:.2f} per token, "
                        f"under {confidence_floor(vocab_size):.2f} for a vocabulary of {vocab_size})")
    return problems


def run_self_test(captioner: Captioner, beam_size: int | None = None) -> SelfTestResult:
    """Caption the test image twice, as the decoder sees it and as users get it (with a heatmap); raise
    :class:`SelfTestFailed` unless both are plausible."""
    png = builtin_image()
    options = replace(captioner.options, beam_size=beam_size or captioner.options.beam_size)
    hyp = caption_arrays(captioner.bundle, captioner.preprocess(png)[1][None], options)[0]
    words = [captioner.bundle.itos[t] for t in hyp.tokens]
    mean_log_prob = hyp.score(1.0)
    decoded = " ".join(words)
    problems = check_decoded(words, hyp.finished, mean_log_prob, len(captioner.bundle.itos), options.max_len)
    if problems:
        raise SelfTestFailed(f"test-image caption {decoded!r:.120}: {'; '.join(problems)}")
    out = captioner.caption_images([png], beam_size=beam_size, heatmap=True)[0]
    if isinstance(out, ImageRejected) or not out.words or not out.heatmap_png:
        raise SelfTestFailed(f"the served caption of the test image is empty or has no heatmap: {out!r:.200}")
    return SelfTestResult(out.caption, decoded, mean_log_prob)

