"""Batched beam search (and greedy decoding) over the decoder's ``init_state``/``step``, in torch.

The rules, shared with the numpy runtime so both produce the same words:
- every image keeps ``beam_size`` hypotheses; at step 0 only one of them is alive (the others start at -inf),
  so the first expansion picks the ``beam_size`` best distinct first words;
- the score of a hypothesis is the sum of the log-probabilities of its words, ``<end>`` included
  (no length normalisation);
- ``<pad>``, ``<start>`` and ``<unk>`` are never emitted; with ``no_repeat`` a word never follows itself;
- a hypothesis that has emitted ``<end>`` is finished: it keeps its score and takes no more words, but it stays
  in the beam and competes with the live ones; search stops when every beam of every image is finished, or after
  ``max_len + 1`` steps (then unfinished hypotheses are returned as they are);
- results come out best score first; ties keep the lower beam index (``torch.topk`` order, stable sort).
Beam size 1 is exactly greedy decoding under the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captionbot.training.model import Decoder

PAD, START, END, UNK = 0, 1, 2, 3


@dataclass
class Hypothesis:
    tokens: list[int]  # word ids, without <start>, with <end> when finished
    score: float  # sum of log-probabilities
    alphas: torch.Tensor  # [len(tokens), P] attention per emitted word


@torch.no_grad()
def beam_search(
    decoder: Decoder,
    features: torch.Tensor,
    beam_size: int = 3,
    max_len: int | None = None,
    no_repeat: bool = False,
) -> list[list[Hypothesis]]:
    """features [B, P, C] -> for each image, ``beam_size`` hypotheses ordered by score (best first)."""
    B, P, C = features.shape
    k = beam_size
    steps = (max_len if max_len is not None else decoder.cfg.max_len) + 1  # words + <end>
    device = features.device
    feats = features.unsqueeze(1).expand(B, k, P, C).reshape(B * k, P, C)  # [B*k, P, C]
    h, c, att_proj = decoder.init_state(feats)
    scores = torch.full((B, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis per image at the start
    words = torch.full((B * k,), START, dtype=torch.long, device=device)
    finished = torch.zeros(B, k, dtype=torch.bool, device=device)
    tokens = torch.empty(B, k, 0, dtype=torch.long, device=device)
    alphas = torch.empty(B, k, 0, P, device=device)
    for _ in range(steps):
        log_probs, h, c, alpha = decoder.step(words, h, c, feats, att_proj)  # [B*k, V]
        V = log_probs.size(1)
        log_probs = log_probs.float().clone()
        log_probs[:, [PAD, START, UNK]] = float("-inf")
        if no_repeat and tokens.size(2) > 0:
            log_probs.scatter_(1, words.unsqueeze(1), float("-inf"))
        # a finished hypothesis extends only with <pad> at no cost, so it keeps its score and its place
        done = finished.view(-1)
        log_probs[done] = float("-inf")
        log_probs[done, PAD] = 0.0
        cand = (scores.unsqueeze(2) + log_probs.view(B, k, V)).view(B, k * V)
        scores, flat = cand.topk(k, dim=1)  # [B, k], sorted best first
        beam_idx = flat // V
        word_idx = flat % V
        rows = (beam_idx + torch.arange(B, device=device).unsqueeze(1) * k).view(-1)  # parent rows
        h, c = h[rows], c[rows]
        finished = finished.gather(1, beam_idx)
        tokens = torch.cat([tokens.gather(1, beam_idx.unsqueeze(2).expand_as(tokens)), word_idx.unsqueeze(2)], 2)
        alpha = alpha.view(B, k, P).gather(1, beam_idx.unsqueeze(2).expand(B, k, P))
        alphas = torch.cat([alphas.gather(1, beam_idx[:, :, None, None].expand_as(alphas)), alpha.unsqueeze(2)], 2)
        finished = finished | (word_idx == END)
        words = word_idx.view(-1)
        if bool(finished.all()):
            break
    out: list[list[Hypothesis]] = []
    for b in range(B):
        hyps = []
        for j in range(k):
            seq = tokens[b, j].tolist()
            n = seq.index(END) + 1 if END in seq else len(seq)
            hyps.append(Hypothesis(seq[:n], float(scores[b, j]), alphas[b, j, :n].cpu()))
        out.append(hyps)
    return out


@torch.no_grad()
def greedy_decode(decoder: Decoder, features: torch.Tensor, max_len: int | None = None) -> list[list[int]]:
    """The most likely word at each step (never <pad>/<start>/<unk>), until <end>: [B, P, C] -> B token lists."""
    B = features.size(0)
    steps = (max_len if max_len is not None else decoder.cfg.max_len) + 1
    h, c, att_proj = decoder.init_state(features)
    words = torch.full((B,), START, dtype=torch.long, device=features.device)
    out: list[list[int]] = [[] for _ in range(B)]
    alive = [True] * B
    for _ in range(steps):
        log_probs, h, c, _ = decoder.step(words, h, c, features, att_proj)
        log_probs = log_probs.float().clone()
        log_probs[:, [PAD, START, UNK]] = float("-inf")
        words = log_probs.argmax(1)
        for b, w in enumerate(words.tolist()):
            if alive[b]:
                out[b].append(w)
                alive[b] = w != END
        if not any(alive):
            break
    return out
