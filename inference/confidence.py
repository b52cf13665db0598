"""How sure a caption is, 0-1, and what to say when it is not sure.

``confidence`` is a logistic model of "the caption is right", fitted on half A of the Flickr8k and COCO dev sets
(a caption counts as right when its per-image CIDEr against the human captions is >= ``GOOD_CIDER``) from what
the runtime knows: the decoder's mean log-probability per token, the top ImageNet label's probability, the label
entropy, whether a label started the caption, and whether the caption names the top label. It was checked on
half B (risk-coverage table in docs/model.md; ``bench/confidence_fit.py``).

Below ``HEDGE_BELOW`` the caption says less: "Possibly a cat." when a label is fairly sure of the object, else
the caption with "Possibly" in front. Moderators may choose per channel not to post alt text below a threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from captionbot.inference.labels import Label

from captionbot.formats import UNCERTAIN_BELOW

GOOD_CIDER = 0.5
# intercept, mean log-prob per token, top label prob, label entropy (nats), label started caption, caption names label
WEIGHTS = (3.898, 3.019, 0.071, -0.374, 0.911, 0.335)  # bench/confidence_fit.py on bench/results/coco_dev_eval.json
# 18 of 1,000 Flickr8k dev captions, 4 of 107 COCO dev captions (docs/model.md); one threshold with the bot's
# ``skip_uncertain`` channels: captionbot.formats.UNCERTAIN_BELOW
HEDGE_BELOW = UNCERTAIN_BELOW
LABEL_ONLY_MIN_PROB = 0.3  # a low-confidence caption becomes "Possibly a <label>." when the label is this sure


def features(score: float, labels: Sequence[Label], entropy: float, guided: bool, names_top: bool) -> list[float]:
    top = labels[0].prob if labels else 0.0
    return [1.0, score, top, entropy, float(guided), float(names_top)]


def confidence(feats: Sequence[float], weights: Sequence[float] = WEIGHTS) -> float:
    z = sum(w * x for w, x in zip(weights, feats, strict=True))
    return 1.0 / (1.0 + math.exp(-z))


def hedged(sentence: str, labels: Sequence[Label], conf: float, below: float = HEDGE_BELOW) -> str:
    """The caption to show for ``conf``: unchanged when sure enough, else a shorter, honest one."""
    if conf >= below or not sentence:
        return sentence
    from captionbot.inference.guided import article

    sure = next((lab for lab in labels if lab.guide and lab.prob >= LABEL_ONLY_MIN_PROB), None)
    if sure is not None:
        return f"Possibly {article(sure.word)} {sure.word}."
    return f"Possibly {subject(sentence[:1].lower() + sentence[1:].rstrip('.'))}."


# Where the subject of a served caption ends: "a man in a white jacket | is running through the camera".
VERB_CUES = frozenset({
    "is", "are", "sits", "sitting", "stands", "standing", "walks", "walking", "runs", "running", "plays",
    "playing", "jumps", "jumping", "rides", "riding", "holds", "holding", "looks", "looking", "climbs",
    "climbing", "swims", "swimming", "lies", "lying", "lays", "laying", "waits", "waiting",
})


def subject(caption: str) -> str:
    """Say less when unsure: the caption up to its first verb ("a man in a white jacket"), or all of it."""
    words = caption.split()
    cut = next((i for i, w in enumerate(words) if w in VERB_CUES and i >= 2), len(words))
    return " ".join(words[:cut])
