"""Served images/s of a bundle whose cells carry shared channels (issue 19's local grids: the global vector in every
cell), with the decoder step gathering each row's whole features (the rewrite before stop 28) vs only the slices
it reads (``inference/image_rows.py``), against the shipped bundle, in one run: the three captioners interleaved,
best of ``--rounds`` each, batches of 16 as the worker takes them, on the first ``--n`` Flickr8k dev photos.

    .venv/bin/python bench/shared_channel_gather.py --bundle B --n 64 --threads 1 --variant int8 --rounds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from captionbot.inference.bundle import load_bundle, session_options, variant_paths  # noqa: E402
from captionbot.inference.captioner import Captioner, CaptionOutput  # noqa: E402
from captionbot.inference.image_rows import gather_step_graph  # noqa: E402
from label_throughput import interleaved_rates  # noqa: E402

from captionbot import formats  # noqa: E402


def whole_features_gathered(bundle_dir: Path, variant: str, threads: int) -> Captioner:
    """The bundle as loaded, but with the step graph that gathers every row's whole features."""
    bundle = load_bundle(bundle_dir, variant=variant, provider="cpu", threads=threads)
    path = variant_paths(bundle_dir, bundle.manifest, bundle.variant)[formats.DECODER_STEP_FILE]
    graph = gather_step_graph(path.read_bytes(), after_slices=False)
    assert graph is not None and bundle.row_gather
    step = ort.InferenceSession(graph, sess_options=session_options(threads), providers=bundle.providers)
    return Captioner(dataclasses.replace(bundle, decoder_step=step))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True, help="a bundle whose features carry shared channels")
    ap.add_argument("--shipped", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variant", default="int8", help="fp32, int8 or auto (the worker's default)")
    args = ap.parse_args()
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data"))
    names = sorted((data / "flickr8k/Flickr_8k.devImages.txt").read_text().split())[: args.n]
    blobs = [(data / "flickr8k/images" / n).read_bytes() for n in names]
    caps = {
        "shipped": Captioner.load(args.shipped, variant=args.variant, provider="cpu", threads=args.threads),
        "whole": whole_features_gathered(args.bundle, args.variant, args.threads),
        "sliced": Captioner.load(args.bundle, variant=args.variant, provider="cpu", threads=args.threads),
    }
    best, outputs = interleaved_rates(caps, blobs, args.rounds)
    words = {k: sum(len(c.words) for c in out if isinstance(c, CaptionOutput)) / len(out) for k, out in outputs.items()}
    print(f"images/s, best of {args.rounds} ({len(blobs)} Flickr8k dev photos, threads={args.threads}, variant "
          f"{args.variant}); mean words per caption in brackets")
    for k in caps:
        print(f"  {k:8s} {best[k]:7.1f}  ({words[k]:.1f})  vs shipped {best[k] / best['shipped']:.3f}")
    print(f"sliced / whole: {best['sliced'] / best['whole']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
