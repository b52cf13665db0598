"""Batched beam search in numpy over many images × beams, one decoder call per step.

All live hypotheses of all images are rows of one batch (``N`` = sum of live beams), grouped by image. Each step:
call the decoder once on the N rows, add its log-probabilities to each row's running score, and let every image
keep its best ``k`` continuations, where ``k`` is the number of its beams still open. A continuation that ends
with ``<end>`` leaves the active set (the image then has one beam fewer, as in the widely used Show-Attend-Tell
tutorial), so no computation is spent on finished captions. The winner of an image is its finished hypothesis
with the best length-normalised score.

Rules shared with the PyTorch reference in ``export/torch_beam_search.py`` (they must stay identical, because
export checks that both give the same captions token for token):
- ``<pad>``, ``<start>`` and ``<unk>`` are never emitted; ``<end>`` is not allowed as the first token;
- a caption has at most ``max_len`` words: at that step only ``<end>`` is allowed;
- scores are sums of log-probabilities in float64; the final choice uses ``log_prob / (words + 1) ** alpha``;
- optional repeat blocking (``banned_tokens``): no word twice in a row, and/or no repeated word n-gram.
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


@dataclass(frozen=True)
class BeamOptions:
    beam_size: int = 3
    max_len: int = 22  # words, without <start>/<end>
    length_alpha: float = 1.0  # 0: raw sum of log-probs; 1: mean log-prob per token (incl. <end>)
    block_repeated_word: bool = False  # no word twice in a row ("a a dog")
    no_repeat_ngram: int = 0  # n >= 2: no word n-gram twice in one caption; 0 = off


@dataclass
class Hypothesis:
    tokens: list[int]  # word ids, without <start>/<end>
    log_prob: float  # sum of log-probabilities, <end> included
    score: float  # length-normalised log_prob: what beam search ranks finished captions by
    alphas: np.ndarray  # [len(tokens), P]: the attention that produced each word


def normalised_score(log_prob: float, n_words: int, alpha: float) -> float:
    return log_prob / float(n_words + 1) ** alpha


def banned_tokens(tokens: Sequence[int], options: BeamOptions) -> list[int]:
    """Word ids a hypothesis with these ``tokens`` may not emit next under the repeat-blocking options."""
    banned: list[int] = []
    if options.block_repeated_word and tokens:
        banned.append(int(tokens[-1]))
    n = options.no_repeat_ngram
    if n >= 2 and len(tokens) >= n:
        prefix = tuple(tokens[len(tokens) - n + 1 :])
        for i in range(len(tokens) - n + 1):
            if tuple(tokens[i : i + n - 1]) == prefix:
                banned.append(int(tokens[i + n - 1]))
    return banned


def mask_log_probs(
    log_probs: np.ndarray, t: int, token_rows: Sequence[Sequence[int]], special: SpecialIds, options: BeamOptions
) -> np.ndarray:
    """Apply the emission rules (in place) to float64 ``log_probs`` [N, V] at step ``t`` (0 = first word)."""
    log_probs[:, [special.pad, special.start, special.unk]] = -np.inf
    if t == 0:
        log_probs[:, special.end] = -np.inf
    if t >= options.max_len:  # the caption is full: it must end now
        end_col = log_probs[:, special.end].copy()
        log_probs[:] = -np.inf
        log_probs[:, special.end] = end_col
        return log_probs
    if options.block_repeated_word or options.no_repeat_ngram >= 2:
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
    special: SpecialIds = SpecialIds(),
) -> list[Hypothesis]:
    """Best caption of each of the B images. ``features`` [B,P,C], ``h``/``c`` [B,D], ``att_proj`` [B,P,A] are
    the decoder-init outputs for the batch. Returns one :class:`Hypothesis` per image, in order."""
    B, P = features.shape[0], features.shape[1]
    K = options.beam_size
    if K < 1:
        raise ValueError(f"beam_size must be >= 1, got {K}")
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    open_beams = np.full(B, K)  # beams still open per image

    row_img = np.arange(B)  # image of each active row; rows are grouped by image, in image order
    words = np.full(B, special.start, dtype=np.int64)
    scores = np.zeros(B, dtype=np.float64)
    tokens = np.zeros((B, 0), dtype=np.int64)
    alphas = np.zeros((B, 0, P), dtype=np.float32)
    feats_rows, proj_rows = features, att_proj  # features of each row: regathered only when row_img changes

    for t in range(options.max_len + 1):
        log_probs, h, c, alpha = step(words, h, c, feats_rows, proj_rows)
        cand = mask_log_probs(log_probs.astype(np.float64), t, tokens.tolist(), special, options)
        cand += scores[:, None]  # [N, V]
        V = cand.shape[1]

        # Per image, the best k = open_beams[img] continuations among its rows × V. Pad each image's rows to
        # K (or 1 at t = 0) so one argpartition serves all images.
        imgs, first_row, n_rows = np.unique(row_img, return_index=True, return_counts=True)
        width = int(n_rows.max())
        padded = np.full((len(imgs), width, V), -np.inf)
        pos_in_img = np.arange(len(row_img)) - np.repeat(first_row, n_rows)
        padded[np.repeat(np.arange(len(imgs)), n_rows), pos_in_img] = cand
        flat = padded.reshape(len(imgs), width * V)
        k_max = int(open_beams[imgs].max())
        top = np.argpartition(-flat, k_max - 1, axis=1)[:, :k_max]
        top_val = np.take_along_axis(flat, top, axis=1)
        order = np.argsort(-top_val, axis=1, kind="stable")
        top, top_val = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_val, order, axis=1)
        keep = np.arange(k_max)[None, :] < open_beams[imgs][:, None]  # image g keeps its first open_beams[g]
        g_idx, j_idx = np.nonzero(keep)
        choice = top[g_idx, j_idx]
        new_score = top_val[g_idx, j_idx]
        parent = first_row[g_idx] + choice // V
        tok = (choice % V).astype(np.int64)
        img_of = imgs[g_idx]

        ended = (tok == special.end) | ~np.isfinite(new_score)
        for i in np.nonzero(ended)[0]:
            p, g = int(parent[i]), int(img_of[i])
            toks = tokens[p].tolist()
            lp = float(new_score[i])
            finished[g].append(Hypothesis(toks, lp, normalised_score(lp, len(toks), options.length_alpha), alphas[p]))
            open_beams[g] -= 1
        live = ~ended
        if not live.any():
            break
        parent, tok = parent[live], tok[live]
        new_row_img = img_of[live]
        h, c = h[parent], c[parent]
        words, scores = tok, new_score[live]
        tokens = np.concatenate([tokens[parent], tok[:, None]], axis=1)
        alphas = np.concatenate([alphas[parent], alpha[parent][:, None, :].astype(np.float32)], axis=1)
        if not np.array_equal(new_row_img, row_img):
            feats_rows, proj_rows = features[new_row_img], att_proj[new_row_img]
        row_img = new_row_img

    return [max(hyps, key=lambda hyp: hyp.score) for hyps in finished]


def greedy_search(
    step: StepFn,
    features: np.ndarray,
    h: np.ndarray,
    c: np.ndarray,
    att_proj: np.ndarray,
    options: BeamOptions,
    special: SpecialIds = SpecialIds(),
) -> list[list[int]]:
    """Arg-max decoding under the same emission rules: what beam search with ``beam_size=1`` must return."""
    B = features.shape[0]
    words = np.full(B, special.start, dtype=np.int64)
    out: list[list[int]] = [[] for _ in range(B)]
    done = np.zeros(B, dtype=bool)
    for t in range(options.max_len + 1):
        log_probs, h, c, _ = step(words, h, c, features, att_proj)
        lp = mask_log_probs(log_probs.astype(np.float64), t, out, special, options)
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
