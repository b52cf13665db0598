"""The reference: per-image beam search in PyTorch, written the way the widely used Show-Attend-Tell tutorial
does it (one image at a time, its k beams as a batch of k, finished beams leave and k shrinks).

It is independent code from the runtime's batched numpy search (``inference/beam_search.py``) but follows the
same emission rules (shared through ``mask_log_probs``), so export can demand that both give the same captions
token for token, and the throughput benchmark can compare the runtime against the common way of doing it.
"""

from __future__ import annotations

import numpy as np
import torch

from inference.beam_search import BeamOptions, Hypothesis, SpecialIds, mask_log_probs, normalised_score
from training.model import Captioner

DEFAULT_SPECIAL = SpecialIds()


@torch.inference_mode()
def torch_beam_search(
    model: Captioner, image: torch.Tensor, options: BeamOptions, special: SpecialIds = DEFAULT_SPECIAL
) -> Hypothesis:
    """``image`` [3, H, W], normalised -> the best hypothesis for it."""
    features = model.encoder(image.unsqueeze(0))  # [1, P, C]
    return torch_beam_search_features(model, features, options, special)


@torch.inference_mode()
def torch_beam_search_features(
    model: Captioner, features: torch.Tensor, options: BeamOptions, special: SpecialIds = DEFAULT_SPECIAL
) -> Hypothesis:
    """Beam search for one image from its encoder ``features`` [1, P, C]."""
    dec = model.decoder
    P = features.size(1)
    h, c, att_proj = dec.init_state(features)
    k = options.beam_size
    words = torch.tensor([special.start], dtype=torch.long)
    scores = torch.zeros(1, dtype=torch.float64)
    seqs: list[list[int]] = [[]]
    seq_alphas = torch.zeros(1, 0, P)
    complete: list[Hypothesis] = []
    for t in range(options.max_len + 1):
        n = words.size(0)
        log_probs, h, c, alpha = dec.step(words, h, c, features.expand(n, -1, -1), att_proj.expand(n, -1, -1))
        masked = mask_log_probs(log_probs.double().numpy().copy(), t, seqs, special, options)
        cand = torch.from_numpy(masked) + scores[:, None]  # [n, V]
        V = cand.size(1)
        top_scores, top_idx = cand.view(-1).topk(k)  # sorted, best first
        parents, toks = top_idx // V, top_idx % V
        live_rows = []
        for j in range(k):
            p, w, s = int(parents[j]), int(toks[j]), float(top_scores[j])
            if w == special.end or not np.isfinite(s):
                toks_p = seqs[p]
                complete.append(
                    Hypothesis(toks_p, s, normalised_score(s, len(toks_p), options.length_alpha), seq_alphas[p].numpy())
                )
            else:
                live_rows.append(j)
        k -= k - len(live_rows)
        if k == 0:
            break
        sel = torch.tensor(live_rows, dtype=torch.long)
        par = parents[sel]
        seqs = [seqs[int(p)] + [int(w)] for p, w in zip(par, toks[sel], strict=True)]
        seq_alphas = torch.cat([seq_alphas[par], alpha[par].unsqueeze(1)], dim=1)
        h, c, words, scores = h[par], c[par], toks[sel], top_scores[sel]
    return max(complete, key=lambda hyp: hyp.score)
