"""Captions that name what the classifier sees: a confident ImageNet label starts the caption, the decoder
writes the rest.

How: the label's noun phrase ("a cat", "a cup of coffee") is fed to the LSTM word by word (teacher forcing, a
forced prefix), and the usual batched beam search continues from there, so the rest of the sentence is the
decoder's own and stays grammatical ("a cat laying on a bed"). A label word the vocabulary lacks ("zebra",
"banana", "screenshot": 262 of the 451 guiding words) is handled as in DCC (Hendricks et al. 2016): the LSTM is fed
an in-vocabulary anchor of the same group ("dog" for animals, "cake" for food, ...) and the caption shows the
label's word in its place.

When (``GuidePolicy``): only for an image whose free caption does not already name its best guiding label
(``labels.mentions``), whose free caption the decoder is unsure of (mean log-prob per token <= -1.1) and whose
label is confident (summed probability >= 0.3; >= 0.6 when the free caption is about a person). Every other image
keeps its free caption, so Flickr8k's people and dog photos are (nearly) untouched. Thresholds chosen on half A
of both dev sets, confirmed on half B (``bench/coco_dev_eval.py``, docs/model.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from captionbot.inference.beam_search import LmFn, StepFn
from captionbot.inference.grammar import article, disagreeing_verbs
from captionbot.inference.labels import Label, mentions

# the in-vocabulary word fed to the LSTM in place of a label word it does not know, by the label's group
ANCHORS = {
    "animal": "dog",
    "food": "cake",
    "drink": "cup",
    "vehicle": "car",
    "appliance": "stove",
    "electronics": "computer",
    "furniture": "table",
    "text": "sign",
    "instrument": "guitar",
    "plant": "flower",
    "scene": "building",
    "object": "toy",
    "sports": "ball",
    "person": "man",
    "clothing": "shirt",
}


# After a forced non-animal label, the caption may go on only with these words (and end): what COCO captions say
# after an object noun ("a cup of coffee on a table next to a laptop"), so no "a tripod plays guitar" or "a cup of
# coffee with a ball in its mouth" from a decoder that learnt its verbs on people and dogs.
# ``bench/continuation_words.py --min-count 20`` (121 words; "s" dropped here).
_CONTINUATION = (
    "a above along an and are area as at back background bananas bathroom beach bed behind black blue bowl "
    "bridge building by car cars cat chair city computer couch covered desk down driving empty field filled "
    "flowers flying food for frisbee from front full glass grass green has his in inside into is it its keyboard "
    "kitchen laptop large laying looking lot many middle monitor mouse near next of on one other out outside "
    "over parked parking people pizza plate plates pole red road room several side sits sitting sky small some "
    "standing station street table tall that the through to toilet top tower track tracks train traveling tree "
    "trees two up vase wall water while white window with wooden"
)
# "and" dropped too: with it the search chained colours ("a broccoli with a small white and black and a green ...");
# without it COCO dev half A scored 0.494 vs 0.484 unrestricted and 0.475 with it (docs/model.md)
CONTINUATION_WORDS = frozenset(_CONTINUATION.split()) - {"and"}


@dataclass(frozen=True)
class Prefix:
    shown: list[str]  # words the caption starts with ("a", "cup", "of", "coffee")
    fed: list[int]  # word ids fed to the LSTM for them (same length or shorter)




def make_prefix(label: Label, stoi: dict[str, int]) -> Prefix:
    """The forced start of a caption naming ``label``; out-of-vocabulary words become the group's anchor."""
    words = label.word.split()
    art = article(label.word)
    if all(w in stoi for w in words):
        fed = [art, *words]
    elif words[-1] in stoi:  # "lotion bottle": the head is known, the modifier is only shown
        fed = [art, words[-1]]
    else:
        anchor = ANCHORS.get(label.group, "thing")
        fed = ["a" if art == "an" else art, anchor]
    return Prefix([art, *words], [stoi[w] for w in fed if w in stoi])


# words that make a caption's subject a person: ImageNet has no person class, so for such a photo a label names
# something in the scene (a "unicycle" under a BMX rider, a "stage" under a singer) and needs to be surer
_PEOPLE_WORDS = (
    "man men woman women boy boys girl girls people person child children kid kids player players guy lady crowd "
    "group team couple baby biker bikers skier skateboarder surfer climber"
)
PEOPLE = frozenset(_PEOPLE_WORDS.split())


@dataclass(frozen=True)
class GuidePolicy:
    """When a label may start the caption. Chosen on half A of both dev sets (by image id), confirmed on half B
    (docs/model.md, ``bench/coco_dev_eval.py``)."""

    min_prob: float = 0.3  # the label's summed probability
    max_free_score: float = -1.1  # only when the free caption's mean log-prob per token is at most this (unsure)
    person_min_prob: float = 0.6  # min_prob when the free caption is about a person
    # also rewrite an unsure free caption that names a non-animal label ("a sign is jumping over a frisbee") with
    # the restricted continuation: off, Flickr8k dev half A 0.581 vs 0.583, COCO dev half A level (docs/model.md)
    redo_named_objects: bool = False


SERVED_POLICY = GuidePolicy()
ANY_LABEL = GuidePolicy(min_prob=0.2, max_free_score=0.0, person_min_prob=0.2, redo_named_objects=True)
REDO_NAMED = GuidePolicy(redo_named_objects=True)  # no gate but the label's own


def choose_label(
    labels: Sequence[Label], free_words: list[str], free_score: float, policy: GuidePolicy
) -> Label | None:
    """The label to start the caption with, or None to keep the free caption."""
    best = next((lab for lab in labels if lab.guide), None)
    if best is None or free_score > policy.max_free_score:
        return None
    if mentions(free_words, best.word) and not (policy.redo_named_objects and best.group not in ("animal", "person")):
        return None
    person = bool(set(free_words[:4]) & PEOPLE)
    return best if best.prob >= (policy.person_min_prob if person else policy.min_prob) else None


def prefixed_step(step: StepFn, prefixes: Sequence[list[int]]) -> tuple[StepFn, list[list[np.ndarray]]]:
    """Wrap a decoder step so that its FIRST call (all rows ``<start>``, one per image, in image order) also feeds
    image ``b``'s ``prefixes[b]`` word by word; later calls pass through. Returns the wrapped step and, per image,
    the attention maps that produced the prefix words (filled on the first call)."""
    prefix_alphas: list[list[np.ndarray]] = [[] for _ in prefixes]
    state = {"first": True}

    def wrapped(word, h, c, feats, proj):
        if not state["first"]:
            return step(word, h, c, feats, proj)
        state["first"] = False
        log_probs, h, c, alpha = (np.array(x) for x in step(word, h, c, feats, proj))
        for j in range(max((len(p) for p in prefixes), default=0)):
            rows = np.array([b for b, p in enumerate(prefixes) if len(p) > j])
            for b in rows:
                prefix_alphas[b].append(alpha[b].copy())
            fed = np.array([prefixes[b][j] for b in rows], dtype=np.int64)
            lp, hr, cr, ar = step(fed, h[rows], c[rows], feats[rows], proj[rows])
            log_probs[rows], h[rows], c[rows], alpha[rows] = lp, hr, cr, ar
        return log_probs, h, c, alpha

    return wrapped, prefix_alphas


def prefixed_lm(lm: LmFn, prefixes: Sequence[list[int]]) -> LmFn:
    """A language model that sees image ``b``'s forced ``prefixes[b]`` before the words the search made."""

    def wrapped(tokens: Sequence[Sequence[int]], images: np.ndarray) -> np.ndarray:
        return lm([[*prefixes[int(b)], *toks] for toks, b in zip(tokens, images, strict=True)], images)

    return wrapped


@dataclass
class Guided:
    """One image's caption after guidance: its words and attention, the label that started it (None: the free
    caption was kept) and the free caption it replaced."""

    words: list[str]
    alphas: np.ndarray  # [len(words), P]
    score: float  # mean log-probability per token of the decoded words (the forced prefix not counted; for a
    # caption the language models rephrased, the free caption's: inference/fused.py)
    label: Label | None
    free_words: list[str]
    free_score: float


def guide_captions(
    bundle, feats: np.ndarray, free: Sequence, labels: Sequence[Sequence[Label]], options, policy: GuidePolicy
) -> list[Guided]:
    """Second pass for the images whose confident label the free captions ``free`` (hypotheses) do not name:
    one batched beam search over just those images, each starting with its label's phrase."""
    from captionbot.inference.beam_search import beam_search

    from captionbot.formats import SPECIAL_IDS

    itos = bundle.itos
    out = []
    for hyp, labs in zip(free, labels, strict=True):
        words = [itos[t] for t in hyp.tokens]
        s = hyp.score(1.0)
        out.append(Guided(words, hyp.alphas, s, choose_label(labs, words, s, policy), words, s))
    chosen = [(i, g.label) for i, g in enumerate(out) if g.label is not None]
    if not chosen:
        return out
    todo = [i for i, _ in chosen]
    stoi = {w: i for i, w in enumerate(itos)}
    prefixes = [make_prefix(label, stoi) for _, label in chosen]
    sub, h, c, att_proj = bundle.search_inputs(feats[todo])
    inanimate = np.zeros(len(itos), dtype=bool)
    inanimate[[stoi[w] for w in CONTINUATION_WORDS if w in stoi] + [SPECIAL_IDS.end]] = True
    allowed = np.ones((len(todo), len(itos)), dtype=bool)
    for row, ((_, label), prefix) in enumerate(zip(chosen, prefixes, strict=True)):
        if label.group not in ("animal", "person"):  # animals do things: the decoder's verbs fit ("a cat is playing")
            allowed[row] = inanimate
            nouns = [t for t in prefix.fed if itos[t] not in ("a", "an", "some", "of")]
            allowed[row, nouns] = False  # no "a laptop laptop"
        allowed[row, [stoi[v] for v in disagreeing_verbs(label.word) if v in stoi]] = False  # no "a bus are"
    step, pre_alphas = prefixed_step(bundle.step, [p.fed for p in prefixes])
    sub_options = replace(options, allowed_words=allowed)
    if options.lm is not None and options.fused:  # the language model reads the forced prefix too ("a bus" -> "is")
        sub_options = replace(sub_options, lm=prefixed_lm(options.lm, [p.fed for p in prefixes]))
    hyps = beam_search(step, sub, h, c, att_proj, sub_options, SPECIAL_IDS)
    for i, prefix, pa, hyp in zip(todo, prefixes, pre_alphas, hyps, strict=True):
        shown = list(prefix.shown)
        pa = (pa + [pa[-1]] * len(shown))[: len(shown)]  # one map per shown prefix word
        rest = [itos[t] for t in hyp.tokens]
        alphas = np.concatenate([np.stack(pa), hyp.alphas]) if len(hyp.tokens) else np.stack(pa)
        out[i].words, out[i].alphas, out[i].score = shown + rest, alphas, hyp.score(1.0)
    return out
