"""Encoder throughput by images per call (onnxruntime, CPU): why the runtime encodes in chunks of 8
(``captionbot.inference.captioner.ENCODER_CHUNK``).

    .venv/bin/python bench/encoder_chunks.py --bundle models/default --threads 1   # and --threads 2
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
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per chunk size")
    args = ap.parse_args()
    bundle = load_bundle(args.bundle, provider="cpu", threads=args.threads)
    size = bundle.manifest.encoder.input_size
    for chunk in (1, 4, 8, 16, 32, 64):
        x = np.random.default_rng(0).standard_normal((chunk, 3, *size)).astype(np.float32)
        bundle.encode(x)  # warm-up
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < args.seconds:
            bundle.encode(x)
            n += chunk
        rate = n / (time.perf_counter() - t0)
        print(f"chunk {chunk:3d}: {rate:7.1f} images/s ({args.threads} thread(s))", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
