"""Batched beam search in numpy over many images × beams, one decoder call per step.

The rules are those of the PyTorch search in ``training/beam_search.py`` (what evaluation scores are measured
with), so the bundle captions exactly as the evaluated model did; export checks this token for token:
- every image keeps ``beam_size`` hypotheses; at step 0 only one is alive, so the first expansion picks the
  ``beam_size`` best distinct first words;
- a hypothesis's score is the sum of its words' log-probabilities, ``<end>`` included;
- ``<pad>``, ``<start>`` and ``<unk>`` are never emitted;
- a hypothesis that emitted ``<end>`` is finished: it keeps its score and competes with the live ones for a
  place in the beam; search stops when all of an image's beam is finished, or after ``max_len + 1`` steps
  (unfinished hypotheses are then taken as they are);
- beam size 1 is greedy decoding under the same rules.

What the runtime adds, and why it is fast: all live hypotheses of all images are rows of ONE decoder call
(``N`` = sum of live beams), grouped by image; a finished hypothesis leaves the rows (it needs no more decoder
work, it only competes by its frozen score), and an image whose beam is all finished leaves entirely.
The features of each row are regathered only when the set of rows per image changes.

Options beyond the evaluated rules (off by default, so default captions are the evaluated ones):
- ``length_alpha``: the final choice among an image's beam uses ``score / n_tokens ** alpha`` (search itself
  ranks by raw sums, as usual); 0 = raw sums;
- ``block_repeated_word`` (training's ``no_repeat``): a word never follows itself;
- ``no_repeat_ngram`` = n >= 2: no word n-gram appears twice in a caption;
- ``repeatable``: a word outside this set of (function) words never appears twice in a caption;
- ``min_words``: ``<end>`` is masked until a caption has that many words (the runtime's Captioner uses 1, so a
  user never gets an empty caption; training's rules allow one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# (word [N] int64, h [N,D], c [N,D], features [N,P,C], att_proj [N,P,A]) -> (log_probs [N,V], h, c, alpha [N,P])
StepFn = Callable[
    [np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
]


@dataclass(frozen=True)
class SpecialIds:
    pad: int = 0
    start: int = 1
    end: int = 2
    unk: int = 3


DEFAULT_SPECIAL = SpecialIds()


@dataclass(frozen=True)
class BeamOptions:
    beam_size: int = 3
    max_len: int = 22  # words, without <start>/<end>
    length_alpha: float = 0.0  # final choice by score / n_tokens**alpha; 0 = raw sum (the evaluated rule)
    block_repeated_word: bool = False  # no word twice in a row ("a a dog")
    no_repeat_ngram: int = 0  # n >= 2: no word n-gram twice in one caption; 0 = off
    min_words: int = 0  # <end> is not allowed before this many words (0: the evaluated rule allows it at once)
    # when set: a word id outside this set is never emitted twice in one caption ("a dog and a dog"); the set holds
    # the function words that may repeat ("a", "the", "in", ...). None = off
    repeatable: frozenset[int] | None = None


@dataclass
class Hypothesis:
    tokens: list[int]  # word ids, without <start>/<end>
    log_prob: float  # sum of log-probabilities (<end> included when finished)
    finished: bool  # ended with <end> (False: cut at max_len + 1 words)
    alphas: np.ndarray  # [len(tokens), P]: the attention that produced each word

    def score(self, alpha: float = 0.0) -> float:
        """Length-normalised log-probability; alpha 0 = the raw sum."""
        n_tokens = len(self.tokens) + (1 if self.finished else 0)
        return self.log_prob / max(n_tokens, 1) ** alpha


def banned_tokens(tokens: Sequence[int], options: BeamOptions) -> list[int]:
    """Word ids a hypothesis with these ``tokens`` may not emit next under the repeat-blocking options."""
    banned: list[int] = []
    if options.block_repeated_word and tokens:
        banned.append(int(tokens[-1]))
    if options.repeatable is not None:
        banned.extend(int(t) for t in set(tokens) if int(t) not in options.repeatable)
    n = options.no_repeat_ngram
    if n >= 2 and len(tokens) >= n:
        prefix = tuple(tokens[len(tokens) - n + 1 :])
        for i in range(len(tokens) - n + 1):
            if tuple(tokens[i : i + n - 1]) == prefix:
                banned.append(int(tokens[i + n - 1]))
    return banned


def mask_log_probs(
    log_probs: np.ndarray, token_rows: Sequence[Sequence[int]], special: SpecialIds, options: BeamOptions
) -> np.ndarray:
    """Apply the emission rules, in place, to ``log_probs`` [N, V] of rows whose words so far are ``token_rows``."""
    log_probs[:, [special.pad, special.start, special.unk]] = -np.inf
    if options.min_words > 0:
        short = [row for row, toks in enumerate(token_rows) if len(toks) < options.min_words]
        log_probs[short, special.end] = -np.inf
    if options.block_repeated_word or options.no_repeat_ngram >= 2 or options.repeatable is not None:
        for row, toks in enumerate(token_rows):
            ban = banned_tokens(toks, options)
            if ban:
                log_probs[row, ban] = -np.inf
    return log_probs


def beam_search(
    step: StepFn,
    features: np.ndarray,
    h: np.ndarray,
    c: np.ndarray,
    att_proj: np.ndarray,
    options: BeamOptions,
    special: SpecialIds = DEFAULT_SPECIAL,
) -> list[Hypothesis]:
    """Best caption of each of the B images. ``features`` [B,P,C], ``h``/``c`` [B,D], ``att_proj`` [B,P,A] are
    the decoder-init outputs for the batch. Returns one :class:`Hypothesis` per image, in order."""
    B, P = features.shape[0], features.shape[1]
    K = options.beam_size
    if K < 1:
        raise ValueError(f"beam_size must be >= 1, got {K}")
    result: list[Hypothesis | None] = [None] * B
    kept_finished: list[list[Hypothesis]] = [[] for _ in range(B)]  # finished hypotheses still in the beam

    row_img = np.arange(B)  # image of each live row; rows are grouped by image, in image order
    words = np.full(B, special.start, dtype=np.int64)
    scores = np.zeros(B, dtype=np.float64)
    tokens = np.zeros((B, 0), dtype=np.int64)
    alphas = np.zeros((B, 0, P), dtype=np.float32)
    feats_rows, proj_rows = features, att_proj
    steps = options.max_len + 1

    for t in range(steps):
        log_probs, h, c, alpha = step(words, h, c, feats_rows, proj_rows)
        cand = mask_log_probs(log_probs.astype(np.float64), tokens.tolist(), special, options)
        cand += scores[:, None]  # [N, V]
        V = cand.shape[1]

        # One padded table per image: its live rows × V, then its kept finished hypotheses (frozen scores).
        imgs, first_row, n_rows = np.unique(row_img, return_index=True, return_counts=True)
        G = len(imgs)
        live = np.full((G, K, V), -np.inf)
        live[np.repeat(np.arange(G), n_rows), np.arange(len(row_img)) - np.repeat(first_row, n_rows)] = cand
        done = np.full((G, K), -np.inf)
        for g, img in enumerate(imgs):
            for j, hyp in enumerate(kept_finished[img]):
                done[g, j] = hyp.log_prob
        table = np.concatenate([live.reshape(G, K * V), done], axis=1)
        top = np.argpartition(-table, K - 1, axis=1)[:, :K]
        top_val = np.take_along_axis(table, top, axis=1)
        order = np.lexsort((top, -top_val), axis=1)  # best first; ties: lower index (torch.topk's order)
        top, top_val = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_val, order, axis=1)

        last = t == steps - 1
        new_parent, new_tok, new_score, new_img = [], [], [], []
        for g, img in enumerate(imgs):
            beam_finished: list[Hypothesis] = []
            beam_live = 0
            for idx, val in zip(top[g], top_val[g], strict=True):
                if not np.isfinite(val):
                    continue  # fewer than K possible continuations
                if idx >= K * V:
                    beam_finished.append(kept_finished[img][idx - K * V])
                    continue
                parent, tok = first_row[g] + idx // V, int(idx % V)
                if tok == special.end:
                    beam_finished.append(Hypothesis(tokens[parent].tolist(), float(val), True, alphas[parent]))
                else:
                    beam_live += 1
                    new_parent.append(parent)
                    new_tok.append(tok)
                    new_score.append(val)
                    new_img.append(img)
                    if last:  # cut at max_len + 1 words: taken as it is
                        beam_finished.append(Hypothesis(
                            [*tokens[parent].tolist(), tok], float(val), False,
                            np.concatenate([alphas[parent], alpha[parent][None]]),
                        ))
            kept_finished[img] = beam_finished
            # Early stop, exact under the raw-sum rule (length_alpha 0): when the best entry of the table is a
            # finished caption, no live one can overtake it (each further word only lowers a score), so the
            # image's answer is known and its rows leave the decoder batch now instead of when all K have ended.
            best = top[g][0]
            best_done = bool(np.isfinite(top_val[g][0])) and (best >= K * V or best % V == special.end)
            if beam_live == 0 or last or (best_done and options.length_alpha == 0):
                result[img] = max(beam_finished, key=lambda hyp: hyp.score(options.length_alpha))
        keep = [i for i, img in enumerate(new_img) if result[img] is None]
        if not keep:
            break
        parent = np.asarray(new_parent)[keep]
        new_row_img = np.asarray(new_img)[keep]
        h, c = h[parent], c[parent]
        words = np.asarray(new_tok, dtype=np.int64)[keep]
        scores = np.asarray(new_score, dtype=np.float64)[keep]
        tokens = np.concatenate([tokens[parent], words[:, None]], axis=1)
        alphas = np.concatenate([alphas[parent], alpha[parent][:, None, :].astype(np.float32)], axis=1)
        if not np.array_equal(new_row_img, row_img):
            feats_rows, proj_rows = features[new_row_img], att_proj[new_row_img]
        row_img = new_row_img
    return result  # type: ignore[return-value]  # every image gets its result by the last step


def greedy_search(
    step: StepFn,
    features: np.ndarray,
    h: np.ndarray,
    c: np.ndarray,
    att_proj: np.ndarray,
    options: BeamOptions,
    special: SpecialIds = DEFAULT_SPECIAL,
) -> list[list[int]]:
    """Arg-max decoding under the same rules: what ``beam_search`` with ``beam_size=1`` must return."""
    B = features.shape[0]
    words = np.full(B, special.start, dtype=np.int64)
    out: list[list[int]] = [[] for _ in range(B)]
    done = np.zeros(B, dtype=bool)
    for _ in range(options.max_len + 1):
        log_probs, h, c, _ = step(words, h, c, features, att_proj)
        lp = mask_log_probs(log_probs.astype(np.float64), out, special, options)
        words = lp.argmax(axis=1).astype(np.int64)
        for b in range(B):
            if not done[b]:
                if words[b] == special.end:
                    done[b] = True
                else:
                    out[b].append(int(words[b]))
        if done.all():
            break
    return out
