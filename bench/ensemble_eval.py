"""Dev-split CIDEr of one checkpoint or of an ensemble of several (their log-probabilities averaged at every
step of the one beam search), on the cached features of their shared encoder: the ensemble rows of
docs/model.md's ablations.

    .venv/bin/python bench/ensemble_eval.py runs/default/avg.pt runs/seed1/avg.pt [--beam 3]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.training.checkpoint import load_captioner  # noqa: E402
from captionbot.training.evaluate import evaluate_images  # noqa: E402
from captionbot.training.features import FeatureCache  # noqa: E402
from captionbot.training.model import Decoder  # noqa: E402
from captionbot.training.sources import DataSource, read_sources  # noqa: E402


class EnsembleDecoder(nn.Module):
    """Several decoders behind one ``init_state``/``step``: states side by side, log-probabilities averaged
    (as probabilities), attention averaged."""

    def __init__(self, decoders: list[Decoder]) -> None:
        super().__init__()
        self.decoders = nn.ModuleList(decoders)
        self.cfg = decoders[0].cfg

    def init_state(self, features: torch.Tensor):
        return tuple(torch.cat(x, dim=-1) for x in zip(*(d.init_state(features) for d in self.decoders), strict=True))

    def step(self, word, h, c, features, att_proj):
        n = len(self.decoders)
        outs = [d.step(word, hh, cc, features, aa) for d, hh, cc, aa in
                zip(self.decoders, h.chunk(n, -1), c.chunk(n, -1), att_proj.chunk(n, -1), strict=True)]
        log_probs = torch.logsumexp(torch.stack([o[0] for o in outs]), 0) - math.log(n)
        return (log_probs, torch.cat([o[1] for o in outs], -1), torch.cat([o[2] for o in outs], -1),
                torch.stack([o[3] for o in outs]).mean(0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", type=Path, nargs="+", help="checkpoints with the same encoder and vocabulary")
    ap.add_argument("--beam", type=int, default=3)
    ap.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = ap.parse_args()
    models = [load_captioner(p) for p in args.checkpoints]
    vocab, arch = models[0][1], models[0][0].encoder.arch
    if any(m.encoder.arch != arch or v.itos != vocab.itos for m, v in models):
        sys.exit("the checkpoints must share their encoder and vocabulary")
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data"))
    images = sorted((im for im in read_sources([DataSource("flickr8k", (data / "flickr8k",))]) if im.split == "dev"),
                    key=lambda im: im.image_id)
    cache = FeatureCache.build(args.cache_dir / arch, [im.path for im in images], arch=arch)
    decoder = EnsembleDecoder([m.decoder for m, _ in models]).eval()
    report = evaluate_images(decoder, cache.get, images, vocab, args.beam, ("BLEU", "CIDEr"), split="dev")
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
