"""Evaluation the way papers report it: real beam-search captions (not teacher forcing), scored by pycocoevalcap."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from captionbot.inference.beam_search import BeamOptions
from captionbot.training.data import CaptionedImage, Vocab
from captionbot.training.decode import decode
from captionbot.training.metrics import ALL_METRICS, score_captions
from captionbot.training.model import Decoder

log = logging.getLogger(__name__)


@dataclass
class EvaluationReport:
    split: str
    beam_size: int
    images: int
    scores: dict[str, float | None]
    notes: dict[str, str] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)  # image id -> generated caption

    def summary(self) -> str:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in self.scores.items() if v is not None)
        return f"{self.split} ({self.images} images, beam {self.beam_size}): {shown}"

    def write(self, path: Path) -> None:
        """``path``: scores and settings as JSON; the per-image captions go next to it in ``*.captions.json``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        captions_path = path.with_name(path.stem + ".captions.json")
        report = {"split": self.split, "beam_size": self.beam_size, "images": self.images, "scores": self.scores,
                  "notes": self.notes, "captions_file": captions_path.name}
        path.write_text(json.dumps(report, indent=2))
        captions_path.write_text(json.dumps([{"image_id": k, "caption": v} for k, v in self.captions.items()],
                                            indent=1))


@torch.no_grad()
def generate_captions(
    decoder: Decoder,
    get_features: Callable[[list[str]], np.ndarray],
    image_ids: list[str],
    vocab: Vocab,
    beam_size: int = 3,
    batch_size: int = 100,
    device: torch.device | str = "cpu",
    no_repeat: bool = False,
    progress: bool = False,
) -> dict[str, str]:
    """Best beam for each image id; ``get_features(ids) -> [n, P, C]`` (e.g. ``FeatureCache.get``). Decoded by the
    one beam search (the runtime's) over the PyTorch decoder step, under the evaluated rules."""
    was_training = decoder.training
    decoder.eval()
    options = BeamOptions(beam_size=beam_size, max_len=decoder.cfg.max_len, block_repeated_word=no_repeat)
    out: dict[str, str] = {}
    chunks: Iterable[int] = range(0, len(image_ids), batch_size)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc=f"beam {beam_size}", unit="batch", leave=False)
    for i in chunks:
        ids = image_ids[i : i + batch_size]
        feats = torch.from_numpy(get_features(ids)).to(device)
        for image_id, hyp in zip(ids, decode(decoder, feats, options), strict=True):
            out[image_id] = " ".join(vocab.decode(hyp.tokens))
    decoder.train(was_training)
    return out


def evaluate_images(
    decoder: Decoder,
    get_features: Callable[[list[str]], np.ndarray],
    images: list[CaptionedImage],
    vocab: Vocab,
    beam_size: int = 3,
    metrics: tuple[str, ...] = ALL_METRICS,
    split: str = "",
    device: torch.device | str = "cpu",
    no_repeat: bool = False,
    progress: bool = False,
) -> EvaluationReport:
    """Caption ``images`` with beam search and score them against their references."""
    ids = [im.image_id for im in images]
    captions = generate_captions(decoder, get_features, ids, vocab, beam_size, device=device, no_repeat=no_repeat,
                                 progress=progress)
    scores, notes = score_captions({im.image_id: im.captions for im in images}, captions, metrics)
    return EvaluationReport(split, beam_size, len(images), scores, notes, captions)
