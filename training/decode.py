"""The PyTorch decoder as a step function of the one beam search (``inference/beam_search.py``).

Training's validation, ``captionbot evaluate`` on a checkpoint and export's parity check decode with the same numpy
search the runtime runs over the ONNX graphs; only the step differs. The decoder state (h, c, features, att_proj)
stays in torch on the decoder's device (the search only gathers its rows); each step hands back the log-probs and
the attention as numpy.
"""

from __future__ import annotations

import numpy as np
import torch
from captionbot.inference.beam_search import BeamOptions, Hypothesis, StepFn, beam_search
from captionbot.training.model import Decoder

from captionbot.formats import SPECIAL_IDS, SpecialIds


def torch_step(decoder: Decoder) -> StepFn:
    """``decoder.step`` with numpy words in and numpy log-probs / attention out."""

    def step(word: np.ndarray, h: torch.Tensor, c: torch.Tensor, features: torch.Tensor, att_proj: torch.Tensor):
        log_probs, h, c, alpha = decoder.step(torch.from_numpy(word).to(features.device), h, c, features, att_proj)
        return log_probs.float().cpu().numpy(), h, c, alpha.float().cpu().numpy()

    return step


@torch.no_grad()
def decode(
    decoder: Decoder, features: torch.Tensor, options: BeamOptions, special: SpecialIds = SPECIAL_IDS
) -> list[Hypothesis]:
    """features [B, P, C] -> the best :class:`Hypothesis` per image under ``options`` (the decoder in eval mode)."""
    h, c, att_proj = decoder.init_state(features)
    return beam_search(torch_step(decoder), features, h, c, att_proj, options, special)
