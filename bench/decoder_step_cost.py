"""Cost of one bundle's decoder step vs another's, in one run: the same inputs (``--rows`` rows, as 16 images x 3
beams make), interleaved block by block, best block of ``--blocks`` for each. On a shared machine whole-pipeline
throughput swings more than the difference between two steps; the ratio of best blocks is steadier.

    .venv/bin/python bench/decoder_step_cost.py --before models/default --after /work/heatmap-candidate
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.inference.bundle import load_bundle  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=48)
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20, help="decoder steps per block")
    args = ap.parse_args()
    paths = {"before": args.before, "after": args.after}
    bundles = {k: load_bundle(p, provider="cpu", threads=1) for k, p in paths.items()}
    rng = np.random.default_rng(0)
    inputs = {}  # each bundle's own grid and channels (a 14×14 local-grid bundle's step attends over 196 cells)
    for k, b in bundles.items():
        cells = b.manifest.encoder.grid[0] * b.manifest.encoder.grid[1]
        feats = rng.standard_normal((args.rows, cells, b.manifest.encoder.channels)).astype(np.float32)
        h, c, att_proj = b.init(feats)
        inputs[k] = (np.full(args.rows, 4, dtype=np.int64), h, c, feats, att_proj)
    best = {k: float("inf") for k in bundles}
    for _ in range(args.blocks):
        for k, bundle in bundles.items():
            t = time.perf_counter()
            for _ in range(args.steps):
                bundle.step(*inputs[k])
            best[k] = min(best[k], time.perf_counter() - t)
    per = {k: 1000 * v / args.steps for k, v in best.items()}
    print(
        f"decoder step, {args.rows} rows, best of {args.blocks} blocks of {args.steps}: "
        f"before {per['before']:.2f} ms, after {per['after']:.2f} ms, "
        f"after/before {per['after'] / per['before']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
