"""Batched beam search in numpy over many images × beams, one decoder call per step.

The one search of the project: the runtime runs it over the bundle's ONNX decoder step, training's validation,
``captionbot evaluate`` and export's parity check over the PyTorch decoder step (``training/decode.py``), so the
bundle captions exactly as the evaluated model did (export checks this token for token). The rules:
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
- ``min_words``: ``<end>`` is masked until a caption has that many words (the served policy uses 1, so a
  user never gets an empty caption; training's rules allow one);
- ``groups`` > 1 with ``diversity`` λ: diverse beam search (Vijayakumar et al. 2016, "Diverse Beam Search",
  arXiv:1610.02424) for several different captions of one image (:func:`beam_search_variants`). Each image gets
  ``groups`` beams of ``beam_size`` hypotheses each (all rows of all groups still go through ONE decoder call per
  step). At each step the groups choose in turn; group g ranks its candidates by score − λ · (how many times
  groups 0..g−1 chose that word at this step), the Hamming diversity term. The penalty only steers the choice:
  scores stay true log-probabilities. Group 0 is never penalised, so its caption is exactly the one
  :func:`beam_search` gives; each group's answer is its best finished hypothesis that is not word for word an
  earlier group's (else the group gives none).
- ``lm`` with ``lm_weight`` > 0 (shallow fusion): every hypothesis is ranked by its decoder log-probability plus
  ``lm_weight`` × a caption language model's (``inference/caption_lm.py``), at every step and in the final
  choice; a :class:`Hypothesis` keeps the two sums apart (``log_prob`` is the decoder's alone, so confidence and
  guidance read the decoder as before).
The options a bundle is served with come from its manifest's decoding policy (``inference/policy.py``).
Every emission rule is applied in :func:`mask_log_probs`, the one place a wrapper extends to add rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from captionbot.formats import SPECIAL_IDS, SpecialIds

# (word [N] int64, h [N,D], c [N,D], features [N,P,C], att_proj [N,P,A]) -> (log_probs [N,V], h, c, alpha [N,P]).
# log_probs and alpha are numpy; h, c, features and att_proj may be any array type whose rows a numpy int array
# selects (numpy arrays for the ONNX step, torch tensors for the PyTorch step): the search only gathers rows.
StepFn = Callable[[np.ndarray, Any, Any, Any, Any], tuple[np.ndarray, Any, Any, np.ndarray]]
# (words so far of each of N rows, image of each row [N]) -> next-word log-probabilities [N, V] of a language model
LmFn = Callable[[Sequence[Sequence[int]], np.ndarray], np.ndarray]

DEFAULT_SPECIAL = SPECIAL_IDS
__all__ = ["DEFAULT_SPECIAL", "BeamOptions", "Hypothesis", "LmFn", "SpecialIds", "StepFn", "banned_tokens",
           "beam_search", "beam_search_variants", "greedy_search", "mask_log_probs"]


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
    # when set: [B, V] booleans, image b's captions may only use the words marked in row b (guided captions:
    # inference/guided.py); None = any word
    allowed_words: np.ndarray | None = field(default=None, compare=False)
    groups: int = 1  # diverse beam search: this many groups of beam_size hypotheses, one answer each (variants)
    diversity: float = 0.0  # λ, the Hamming diversity penalty per earlier group's choice of the same word
    # shallow fusion with a caption language model (see the module docstring); None or weight 0 = off
    lm: LmFn | None = field(default=None, compare=False)
    lm_weight: float = 0.0

    @property
    def fused(self) -> bool:
        return self.lm is not None and self.lm_weight != 0.0


@dataclass
class Hypothesis:
    tokens: list[int]  # word ids, without <start>/<end>
    log_prob: float  # sum of log-probabilities (<end> included when finished)
    finished: bool  # ended with <end> (False: cut at max_len + 1 words)
    alphas: np.ndarray  # [len(tokens), P]: the attention that produced each word
    lm_log_prob: float = 0.0  # the language model's sum over the same words (0 without fusion)

    def score(self, alpha: float = 0.0) -> float:
        """Length-normalised decoder log-probability; alpha 0 = the raw sum."""
        n_tokens = len(self.tokens) + (1 if self.finished else 0)
        return self.log_prob / max(n_tokens, 1) ** alpha

    def rank(self, alpha: float = 0.0, lm_weight: float = 0.0) -> float:
        """What the search ranks by: decoder plus weighted LM log-probability, length-normalised."""
        n_tokens = len(self.tokens) + (1 if self.finished else 0)
        return (self.log_prob + lm_weight * self.lm_log_prob) / max(n_tokens, 1) ** alpha


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
    log_probs: np.ndarray, token_rows: Sequence[Sequence[int]] | np.ndarray, special: SpecialIds,
    options: BeamOptions, row_images: np.ndarray | None = None,
) -> np.ndarray:
    """Apply the emission rules, in place, to ``log_probs`` [N, V] of rows whose words so far are ``token_rows``
    (and whose images are ``row_images`` [N], for ``options.allowed_words``). ``token_rows`` as an int array
    [N, t] (rows of equal length, as in the batched search): the same rules, applied to all rows at once."""
    log_probs[:, [special.pad, special.start, special.unk]] = -np.inf
    if options.allowed_words is not None and row_images is not None:
        log_probs[~options.allowed_words[row_images]] = -np.inf
    if isinstance(token_rows, np.ndarray):
        return _mask_token_array(log_probs, token_rows, special, options)
    if options.min_words > 0:
        short = [row for row, toks in enumerate(token_rows) if len(toks) < options.min_words]
        log_probs[short, special.end] = -np.inf
    if options.block_repeated_word or options.no_repeat_ngram >= 2 or options.repeatable is not None:
        for row, toks in enumerate(token_rows):
            ban = banned_tokens(toks, options)
            if ban:
                log_probs[row, ban] = -np.inf
    return log_probs


def _mask_token_array(log_probs: np.ndarray, tokens: np.ndarray, special: SpecialIds,
                      options: BeamOptions) -> np.ndarray:
    """:func:`mask_log_probs`' word rules for rows of equal length ``tokens`` [N, t], without a loop over rows:
    the same bans as :func:`banned_tokens` gives each row."""
    N, t = tokens.shape
    if t < options.min_words:
        log_probs[:, special.end] = -np.inf
    if t == 0:
        return log_probs
    if options.block_repeated_word:
        log_probs[np.arange(N), tokens[:, -1]] = -np.inf
    if options.repeatable is not None:
        repeatable = np.zeros(log_probs.shape[1], dtype=bool)  # a look-up by word id: cheaper than np.isin's sort
        repeatable[[w for w in options.repeatable if 0 <= w < len(repeatable)]] = True
        rows, cols = np.nonzero(~repeatable[tokens])
        log_probs[rows, tokens[rows, cols]] = -np.inf
    n = options.no_repeat_ngram
    if n >= 2 and t >= n:  # each earlier occurrence of the last n-1 words bans the word that followed it
        windows = np.lib.stride_tricks.sliding_window_view(tokens[:, : t - 1], n - 1, axis=1)  # [N, t-n+1, n-1]
        rows, starts = np.nonzero((windows == tokens[:, None, t - n + 1 :]).all(axis=2))
        log_probs[rows, tokens[rows, starts + n - 1]] = -np.inf
    return log_probs


@dataclass
class _Rows:
    """The live hypotheses: one decoder row each, grouped by image in image order."""

    img: np.ndarray  # [N] image of each row
    words: np.ndarray  # [N] last word (the next step's input)
    scores: np.ndarray  # [N] float64 summed log-probabilities the search ranks by (decoder + weighted LM)
    dec: np.ndarray  # [N] float64 the decoder's part of ``scores``
    lm: np.ndarray  # [N] float64 the language model's sum (unweighted; 0 without fusion)
    tokens: np.ndarray  # [N, t] words so far
    alphas: np.ndarray  # [N, t, P] attention per word
    h: Any
    c: Any
    features: Any  # [N, P, C] of each row's image
    att_proj: Any

    @classmethod
    def start(cls, features: Any, h: Any, c: Any, att_proj: Any, special: SpecialIds) -> _Rows:
        B, P = features.shape[0], features.shape[1]
        zeros = np.zeros(B, dtype=np.float64)
        return cls(np.arange(B), np.full(B, special.start, dtype=np.int64), zeros, zeros.copy(), zeros.copy(),
                   np.zeros((B, 0), dtype=np.int64), np.zeros((B, 0, P), dtype=np.float32), h, c, features, att_proj)


class _TableBuffer:
    """The candidate table's memory, reused from step to step (a table is up to B × (K·V + K) float64: 6 MB for a
    batch of 32 at beam 3; allocating it afresh each step cost more than filling it)."""

    def __init__(self) -> None:
        self._data = np.empty(0)

    def get(self, rows: int, width: int) -> np.ndarray:
        """A [rows, width] float64 array (contents undefined)."""
        if self._data.size < rows * width:
            self._data = np.empty(rows * width)
        return self._data[: rows * width].reshape(rows, width)


def _candidate_table(
    cand: np.ndarray, row_img: np.ndarray, kept_finished: list[list[Hypothesis]], K: int, lm_weight: float = 0.0,
    buffer: _TableBuffer | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One padded table per image: its live rows' continuations (K×V) then its kept finished hypotheses (K,
    frozen scores). ``row_img`` is sorted (rows grouped by image in image order). Returns (images [G], first row of
    each image [G], table [G, K*V + K]), the table in ``buffer``'s memory where one is given."""
    N, V = cand.shape
    first_row = np.flatnonzero(np.concatenate(([True], row_img[1:] != row_img[:-1])))
    imgs = row_img[first_row]
    n_rows = np.diff(np.append(first_row, N))
    G = len(imgs)
    table = (buffer or _TableBuffer()).get(G, K * V + K)
    live = table[:, : K * V].reshape(G, K, V)
    if N == G * K:  # every image has all K rows: the rows are the table's live part as they are
        live[...] = cand.reshape(G, K, V)
    else:
        live[np.repeat(np.arange(G), n_rows), np.arange(N) - np.repeat(first_row, n_rows)] = cand
        for short in np.flatnonzero(n_rows < K):
            live[short, n_rows[short] :] = -np.inf
    done = table[:, K * V :]
    done[...] = -np.inf
    for g, img in enumerate(imgs):
        for j, hyp in enumerate(kept_finished[img]):
            done[g, j] = hyp.log_prob + lm_weight * hyp.lm_log_prob
    return imgs, first_row, table


def _top_k(table: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """The K best entries of each table row, best first; ties: lower index first (``torch.topk``'s order). K
    arg-max passes (K is the beam size, a few): each takes the best entry and hides it for the next; the table is
    restored before returning."""
    rows = np.arange(len(table))
    top = np.empty((len(table), K), dtype=np.int64)
    top_val = np.empty((len(table), K))
    for k in range(K):
        best = table.argmax(axis=1)  # the first of equal maxima: the lower index
        top[:, k] = best
        top_val[:, k] = table[rows, best]
        table[rows, best] = -np.inf
    table[rows[:, None], top] = top_val
    return top, top_val


@dataclass
class _Extensions:
    """The live hypotheses chosen this step: parent row, new word, new score and image of each."""

    parent: list[int]
    word: list[int]
    score: list[float]
    dec: list[float]
    lm: list[float]
    img: list[int]


def _choose_for_image(
    img: int, first_row: int, top: np.ndarray, top_val: np.ndarray, rows: _Rows, alpha: np.ndarray,
    kept: list[Hypothesis], V: int, last: bool, special: SpecialIds, chosen: _Extensions,
    step_lp: tuple[np.ndarray, np.ndarray | None],
) -> tuple[list[Hypothesis], int]:
    """Sort one image's K best entries into finished hypotheses (returned, with the count of live ones) and live
    extensions (appended to ``chosen``). At the last step a live extension is also taken as it is."""
    K = len(top)
    finished: list[Hypothesis] = []
    n_live = 0
    dec_lp, lm_lp = step_lp
    for idx, val in zip(top, top_val, strict=True):
        if not np.isfinite(val):
            continue  # fewer than K possible continuations
        if idx >= K * V:
            finished.append(kept[idx - K * V])
            continue
        parent, tok = first_row + idx // V, int(idx % V)
        dec = float(val) if lm_lp is None else float(rows.dec[parent] + dec_lp[parent, tok])
        lm = 0.0 if lm_lp is None else float(rows.lm[parent] + lm_lp[parent, tok])
        if tok == special.end:
            finished.append(Hypothesis(rows.tokens[parent].tolist(), dec, True, rows.alphas[parent], lm))
            continue
        n_live += 1
        chosen.parent.append(parent)
        chosen.word.append(tok)
        chosen.score.append(val)
        chosen.dec.append(dec)
        chosen.lm.append(lm)
        chosen.img.append(img)
        if last:  # cut at max_len + 1 words: taken as it is
            finished.append(Hypothesis([*rows.tokens[parent].tolist(), tok], dec, False,
                                       np.concatenate([rows.alphas[parent], alpha[parent][None]]), lm))
    return finished, n_live


def _answer_known(top: np.ndarray, top_val: np.ndarray, n_live: int, K: int, V: int, last: bool,
                  options: BeamOptions, special: SpecialIds, penalised: bool = False) -> bool:
    """Whether an image's search is over. Besides "no live hypothesis" and the last step: under the raw-sum rule
    (length_alpha 0), when the best entry is a finished caption no live one can overtake it (each further word
    only lowers a score), so the image's rows leave the decoder batch now instead of when all K have ended. Not for
    a diversity-penalised group: its ranking is not by true scores, so a live one may still overtake."""
    best = top[0]
    best_done = bool(np.isfinite(top_val[0])) and (best >= K * V or best % V == special.end)
    return n_live == 0 or last or (best_done and options.length_alpha == 0 and not penalised)


def _next_rows(rows: _Rows, chosen: _Extensions, keep: list[int], alpha: np.ndarray, h: Any, c: Any,
               features: Any, att_proj: Any) -> _Rows:
    """The kept extensions as the next step's rows; image features are regathered only when the rows' images
    change."""
    parent = np.asarray(chosen.parent)[keep]
    img = np.asarray(chosen.img)[keep]
    words = np.asarray(chosen.word, dtype=np.int64)[keep]
    same_images = np.array_equal(img, rows.img)
    return _Rows(
        img=img,
        words=words,
        scores=np.asarray(chosen.score, dtype=np.float64)[keep],
        dec=np.asarray(chosen.dec, dtype=np.float64)[keep],
        lm=np.asarray(chosen.lm, dtype=np.float64)[keep],
        tokens=np.concatenate([rows.tokens[parent], words[:, None]], axis=1),
        alphas=np.concatenate([rows.alphas[parent], alpha[parent][:, None, :].astype(np.float32)], axis=1),
        h=h[parent],
        c=c[parent],
        features=rows.features if same_images else features[img],
        att_proj=rows.att_proj if same_images else att_proj[img],
    )


def beam_search(
    step: StepFn,
    features: Any,
    h: Any,
    c: Any,
    att_proj: Any,
    options: BeamOptions,
    special: SpecialIds = DEFAULT_SPECIAL,
) -> list[Hypothesis]:
    """Best caption of each of the B images. ``features`` [B,P,C], ``h``/``c`` [B,D], ``att_proj`` [B,P,A] are
    the decoder-init outputs for the batch. Returns one :class:`Hypothesis` per image, in order (with
    ``options.groups`` > 1: group 0's, which is the caption without groups)."""
    return [variants[0] for variants in beam_search_variants(step, features, h, c, att_proj, options, special)]


def beam_search_variants(
    step: StepFn,
    features: Any,
    h: Any,
    c: Any,
    att_proj: Any,
    options: BeamOptions,
    special: SpecialIds = DEFAULT_SPECIAL,
) -> list[list[Hypothesis]]:
    """Up to ``options.groups`` different captions of each image (diverse beam search; module docstring), group 0's
    first. With ``groups`` 1 this is :func:`beam_search`'s one caption per image."""
    B, K, G = features.shape[0], options.beam_size, options.groups
    if K < 1:
        raise ValueError(f"beam_size must be >= 1, got {K}")
    if G < 1:
        raise ValueError(f"groups must be >= 1, got {G}")
    if G > 1:  # one search "image" per (image, group), rows in image-major order: image b's group g is b * G + g
        per_group = np.repeat(np.arange(B), G)
        features, h, c, att_proj = features[per_group], h[per_group], c[per_group], att_proj[per_group]
    n = B * G
    result: list[Hypothesis | None] = [None] * n
    kept_finished: list[list[Hypothesis]] = [[] for _ in range(n)]  # finished hypotheses still in the beam
    rows = _Rows.start(features, h, c, att_proj, special)
    steps = options.max_len + 1
    buffer = _TableBuffer()
    for t in range(steps):
        log_probs, h, c, alpha = step(rows.words, rows.h, rows.c, rows.features, rows.att_proj)
        real_images = rows.img // G
        dec_lp = mask_log_probs(log_probs.astype(np.float64), rows.tokens, special, options, real_images)
        lm_lp = options.lm(rows.tokens.tolist(), real_images) if options.lm is not None and options.fused else None
        if lm_lp is not None:
            cand = dec_lp + rows.scores[:, None]  # [N, V]
            cand += options.lm_weight * lm_lp
        else:  # the decoder's log-probabilities are not read again: add the scores in place
            cand = dec_lp
            cand += rows.scores[:, None]
        V = cand.shape[1]
        w = options.lm_weight if lm_lp is not None else 0.0
        last = t == steps - 1
        chosen = _Extensions([], [], [], [], [], [])
        used = np.zeros((B, V)) if G > 1 else None  # words chosen at this step by the groups before, per image
        for g in range(G):
            sel = np.flatnonzero(rows.img % G == g) if G > 1 else np.arange(len(rows.img))
            if sel.size == 0:
                continue
            imgs, first_row, table = _candidate_table(cand[sel] if G > 1 else cand, rows.img[sel], kept_finished, K,
                                                      w, buffer)
            ranked = table
            if used is not None and g > 0 and options.diversity:
                penalty = np.zeros_like(table)
                penalty[:, : K * V] = np.tile(options.diversity * used[imgs // G], (1, K))
                ranked = table - penalty
            top, _ = _top_k(ranked, K)
            top_val = np.take_along_axis(table, top, axis=1)
            for j, img in enumerate(imgs):
                kept_finished[img], n_live = _choose_for_image(img, sel[first_row[j]], top[j], top_val[j], rows, alpha,
                                                               kept_finished[img], V, last, special, chosen,
                                                               (dec_lp, lm_lp))
                if _answer_known(top[j], top_val[j], n_live, K, V, last, options, special,
                                 penalised=g > 0 and options.diversity > 0):
                    result[img] = max(kept_finished[img], key=lambda hyp: hyp.rank(options.length_alpha, w))
                if used is not None:
                    words = top[j][(top[j] < K * V) & np.isfinite(top_val[j])] % V
                    np.add.at(used[img // G], words, 1.0)
        order = np.argsort(np.asarray(chosen.img, dtype=np.int64), kind="stable")  # rows grouped by image again
        chosen = _Extensions(*([x[i] for i in order] for x in (chosen.parent, chosen.word, chosen.score, chosen.dec,
                                                               chosen.lm, chosen.img)))
        keep = [i for i, img in enumerate(chosen.img) if result[img] is None]
        if not keep:
            break
        rows = _next_rows(rows, chosen, keep, alpha, h, c, features, att_proj)
    if any(hyp is None for hyp in result):  # every image gets its result by the last step
        raise RuntimeError(f"beam search ended with {result.count(None)} of {n} searches unanswered")
    return [_distinct(result[b * G: (b + 1) * G], kept_finished[b * G: (b + 1) * G], options.length_alpha)
            for b in range(B)]


def _distinct(best: Sequence[Hypothesis | None], finished: Sequence[list[Hypothesis]],
              alpha: float) -> list[Hypothesis]:
    """One answer per group, in group order: its best caption unless an earlier group gave the same words, then its
    next best finished one that differs; a group with nothing new gives none."""
    out: list[Hypothesis] = []
    for first, pool in zip(best, finished, strict=True):
        assert first is not None
        for hyp in [first, *sorted(pool, key=lambda x: x.score(alpha), reverse=True)]:
            if all(hyp.tokens != other.tokens for other in out):
                out.append(hyp)
                break
    return out


def greedy_search(
    step: StepFn,
    features: Any,
    h: Any,
    c: Any,
    att_proj: Any,
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
        lp = mask_log_probs(log_probs.astype(np.float64), out, special, options, np.arange(B))
        if options.lm is not None and options.fused:
            lp += options.lm_weight * options.lm(out, np.arange(B))
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
