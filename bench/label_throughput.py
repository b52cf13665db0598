"""Served images/s of ``Captioner.caption_images`` on 200 Flickr8k dev photos: the bundle before the label head
(``--before``) vs with it (``--after``), in one run, interleaved (before, after, before, after, ...; best of
``--rounds`` each), batches of 16 as the worker takes them.

    git -C . archive 460d716 models/default | tar -x -C /tmp/before
    .venv/bin/python bench/label_throughput.py --before /tmp/before/models/default --after models/default
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.inference.captioner import Captioner  # noqa: E402


def interleaved_rates(caps: dict[str, Captioner], blobs: list[bytes], rounds: int) -> tuple[dict[str, float],
                                                                                          dict[str, list]]:
    """Each captioner's best images/s over ``rounds``, the captioners taking turns within a round, batches of 16
    as the worker takes them; and each one's outputs of its last round."""
    best = {k: 0.0 for k in caps}
    outputs: dict[str, list] = {}
    for _ in range(rounds):
        for k, cap in caps.items():
            t = time.perf_counter()
            outputs[k] = [o for i in range(0, len(blobs), 16) for o in cap.caption_images(blobs[i : i + 16])]
            best[k] = max(best[k], len(blobs) / (time.perf_counter() - t))
    return best, outputs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--variant", default="fp32", help="fp32, int8 or auto (the worker's default)")
    args = ap.parse_args()
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data"))
    names = sorted((data / "flickr8k/Flickr_8k.devImages.txt").read_text().split())[: args.n]
    blobs = [(data / "flickr8k/images" / n).read_bytes() for n in names]
    caps = {
        k: Captioner.load(p, variant=args.variant, provider="cpu", threads=args.threads)
        for k, p in (("before", args.before), ("after", args.after))
    }
    best, _ = interleaved_rates(caps, blobs, args.rounds)
    print(
        f"images/s, best of {args.rounds}: before {best['before']:.1f}, after {best['after']:.1f}, "
        f"ratio {best['after'] / best['before']:.3f} ({len(blobs)} Flickr8k dev photos, threads={args.threads}, "
        f"variant {args.variant})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
