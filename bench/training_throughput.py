"""Training throughput (captions/s): captionbot's training loop vs the same model trained the common way.

Baseline ("the widely used PyTorch tutorial's style"): every caption is a sample, so each batch reads its JPEGs,
preprocesses them and runs the frozen encoder again; captions are padded to a fixed 20-word unroll and every row
runs every step; batches are drawn at random (unsorted). Same Decoder, same AdamW, same gradient clipping.

captionbot: the real ``Trainer.train_epoch`` — features from the fp16 memory-mapped cache, batches of one caption
length (no step spent on padding), optionally bf16 autocast.

Both run in one process, interleaved round by round, so a busy machine slows them alike; the ratio is the result.

  MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824 \\
    .venv/bin/python bench/training_throughput.py --quick
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.inference.preprocess import decode_image, to_array  # noqa: E402
from captionbot.training.data import PAD, read_flickr8k  # noqa: E402
from captionbot.training.features import FeatureCache  # noqa: E402
from captionbot.training.model import Decoder, Encoder, doubly_stochastic_penalty  # noqa: E402
from captionbot.training.train import TrainConfig, Trainer  # noqa: E402

FIXED_WORDS = 20  # the fixed unroll of the baseline


class NaiveTrainer:
    """The common recipe: encoder per caption, fixed-length padded captions, unsorted random batches."""

    def __init__(self, decoder: Decoder, encoder: Encoder, items: list, vocab, batch_size: int, seed: int) -> None:
        self.decoder, self.encoder, self.batch_size = decoder, encoder.eval(), batch_size
        self.samples = [(im.path, c) for im in items for c in im.captions]  # one sample per caption
        self.vocab = vocab
        self.rng = np.random.default_rng(seed)
        self.opt = torch.optim.AdamW(decoder.parameters(), lr=4e-4)

    def _caption_tensor(self, text: str) -> list[int]:
        from captionbot.training.data import tokenize

        ids = self.vocab.encode(tokenize(text), FIXED_WORDS)
        return ids + [PAD] * (FIXED_WORDS + 2 - len(ids))

    def run(self, steps: int) -> tuple[int, float]:
        self.decoder.train()
        enc = self.encoder
        size = (enc.input_size, enc.input_size)
        t0 = time.perf_counter()
        n = 0
        for _ in range(steps):
            picks = self.rng.choice(len(self.samples), self.batch_size, replace=False)
            paths, texts = zip(*(self.samples[i] for i in picks), strict=True)
            pixels = np.stack([to_array(decode_image(p.read_bytes()), size, enc.mean, enc.std) for p in paths])
            with torch.no_grad():
                feats = enc(torch.from_numpy(pixels))  # [B, P, C], recomputed for every caption
            caps = torch.tensor([self._caption_tensor(t) for t in texts])
            lengths = torch.full((len(texts),), caps.size(1))  # every row runs the full unroll
            logits, alphas = self.decoder(feats, caps, lengths)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(2)), caps[:, 1:].reshape(-1), ignore_index=PAD)
            loss = loss + doubly_stochastic_penalty(alphas, lengths)
            self.opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.decoder.parameters(), 5.0)
            self.opt.step()
            n += len(texts)
        return n, time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="folder with flickr8k/")
    p.add_argument("--cache-dir", type=Path, default=REPO / "cache", help="feature caches (as `captionbot train`)")
    p.add_argument("--quick", action="store_true", help="2 rounds of 3 steps after a warm-up (about 2 minutes)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=8, help="steps per round per variant")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.steps = 2, 3
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    items = [im for im in read_flickr8k(args.data / "flickr8k") if im.split == "train"]
    arch = "efficientnet_lite0"
    cache_dir = args.cache_dir / arch
    if args.quick and not (cache_dir / "index.json").is_file():  # quick mode: a small cache of its own
        items = items[:300]
        cache_dir = Path(tempfile.mkdtemp()) / arch
    cache = FeatureCache.build(cache_dir, [im.path for im in items], arch=arch)

    variants: dict[str, Trainer] = {}
    for name, bf16 in (("captionbot fp32", False), ("captionbot bf16", True)):
        cfg = TrainConfig(out_dir=Path(tempfile.mkdtemp()), batch_size=args.batch_size, hidden_dim=args.hidden,
                          embed_dim=args.hidden, attention_dim=args.hidden, bf16=bf16, val_limit=0, progress=False,
                          max_steps_per_epoch=args.steps, epochs=1000, threads=args.threads)
        variants[name] = Trainer(cfg, items, [], cache)
    vocab = variants["captionbot fp32"].vocab
    dcfg = variants["captionbot fp32"].decoder.cfg
    naive = NaiveTrainer(Decoder(dcfg), Encoder(arch, pretrained=True), items, vocab, args.batch_size, seed=0)

    totals = {name: [0, 0.0] for name in ["baseline (tutorial style)", *variants]}

    def one_round(steps: int, record: bool) -> None:
        n, dt = naive.run(steps)
        if record:
            totals["baseline (tutorial style)"][0] += n
            totals["baseline (tutorial style)"][1] += dt
        for name, trainer in variants.items():
            trainer.cfg.max_steps_per_epoch = steps
            t0 = time.perf_counter()
            stats = trainer.train_epoch()
            dt = time.perf_counter() - t0
            trainer.epoch += 1
            n = round(stats["captions_per_s"] * stats["train_seconds"])  # captions trained on (buckets may be < B)
            if record:
                totals[name][0] += n
                totals[name][1] += dt

    one_round(1, record=False)  # warm-up: allocator, lazy init
    for r in range(args.rounds):
        one_round(args.steps, record=True)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    base = totals["baseline (tutorial style)"][0] / totals["baseline (tutorial style)"][1]
    rows = []
    print(f"\ntraining throughput, batch {args.batch_size}, hidden {args.hidden}, threads {torch.get_num_threads()}, "
          f"{args.rounds} rounds x {args.steps} steps")
    print(f"{'variant':28s} {'captions/s':>11s} {'vs baseline':>12s}")
    for name, (n, dt) in totals.items():
        rate = n / dt
        rows.append({"variant": name, "captions_per_s": round(rate, 1), "speedup": round(rate / base, 2)})
        print(f"{name:28s} {rate:11.1f} {rate / base:11.2f}x")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
