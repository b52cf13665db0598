"""Torch ↔ ONNX parity: the bundle must give the PyTorch model's captions, token for token.

For each beam size, every image is captioned twice by the one beam search (``inference/beam_search.py``, what
evaluation scores are measured with): over the PyTorch decoder step (``training/decode.py``) and by the runtime
(onnxruntime graphs). The report counts identical captions and gives the largest differences seen: encoder
features, and the step outputs (the full log-probability vectors) along each PyTorch caption, teacher-forced
through both decoder steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from captionbot.inference.beam_search import BeamOptions
from captionbot.inference.bundle import Bundle
from captionbot.inference.captioner import caption_arrays
from captionbot.training.decode import decode
from captionbot.training.model import Captioner

from captionbot.formats import SpecialIds

TORCH_BATCH = 50  # images per PyTorch beam-search call


@dataclass
class ParityReport:
    beam_size: int
    images: int
    identical: int
    max_feature_diff: float
    max_log_prob_diff: float  # over the whole vocabulary, every step of every PyTorch caption
    max_score_diff: float  # between the two captions' summed log-probs, where they are identical
    mismatches: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.identical == self.images

    def summary(self) -> str:
        return (f"beam {self.beam_size}: {self.identical}/{self.images} captions identical, "
                f"max |Δ log p| {self.max_log_prob_diff:.2e}, max |Δ features| {self.max_feature_diff:.2e}")

    def to_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def _teacher_forced_diff(model: Captioner, bundle: Bundle, feats: np.ndarray, tokens: list[int],
                         special: SpecialIds) -> float:
    """Largest |log p_torch - log p_onnx| along ``tokens`` (plus <end>) for one image's features [1, P, C]."""
    words = [special.start, *tokens]
    f_t = torch.from_numpy(feats)
    h_t, c_t, p_t = model.decoder.init_state(f_t)
    h_o, c_o, p_o = bundle.init(feats)
    worst = 0.0
    for w in words:
        word = np.array([w], dtype=np.int64)
        lp_t, h_t, c_t, _ = model.decoder.step(torch.from_numpy(word), h_t, c_t, f_t, p_t)
        lp_o, h_o, c_o, _ = bundle.step(word, h_o, c_o, feats, p_o)
        worst = max(worst, float(np.abs(lp_t.numpy() - lp_o).max()))
    return worst


@torch.inference_mode()
def check_parity(
    model: Captioner, bundle: Bundle, images: np.ndarray, beam_sizes: tuple[int, ...] = (1, 3),
    options: BeamOptions | None = None,
) -> list[ParityReport]:
    """``images`` [B,3,H,W], preprocessed. One report per beam size."""
    model = model.eval()
    special = SpecialIds.of(bundle.itos)
    options = options or BeamOptions(max_len=model.decoder.cfg.max_len)
    feats_torch = model.encoder(torch.from_numpy(images)).numpy()
    feats_onnx = bundle.encode(images)
    feat_diff = float(np.abs(feats_torch - feats_onnx).max())
    reports = []
    for k in beam_sizes:
        opts = BeamOptions(**{**asdict(options), "beam_size": k})
        onnx_hyps = caption_arrays(bundle, images, opts)
        torch_tokens = [(hyp.tokens, hyp.log_prob) for i in range(0, len(images), TORCH_BATCH)
                        for hyp in decode(model.decoder, torch.from_numpy(feats_torch[i : i + TORCH_BATCH]), opts,
                                          special)]
        report = ParityReport(k, len(images), 0, feat_diff, 0.0, 0.0)
        for i, (o_hyp, (t_toks, t_score)) in enumerate(zip(onnx_hyps, torch_tokens, strict=True)):
            lp_diff = _teacher_forced_diff(model, bundle, feats_torch[i : i + 1], t_toks, special)
            report.max_log_prob_diff = max(report.max_log_prob_diff, lp_diff)
            if t_toks == o_hyp.tokens:
                report.identical += 1
                report.max_score_diff = max(report.max_score_diff, abs(t_score - o_hyp.log_prob))
            else:
                report.mismatches.append({"image": i, "torch": t_toks, "onnx": o_hyp.tokens,
                                          "torch_score": t_score, "onnx_score": o_hyp.log_prob})
        reports.append(report)
    return reports
