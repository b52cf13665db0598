"""An int8 encoder for the CPU worker: what it costs in CIDEr as served, and what it gives in speed, in one run.

Each configuration is built by ``captionbot.export.int8_encoder`` (the module that builds the shipped file):
post-training static QDQ quantisation, per-channel int8 weights, uint8 activations calibrated on Flickr8k *train*
photos, Conv and ReLU6 (Clip) quantised together, label head too unless ``+fp32labels``. Then:

  quality  the worker's served path (int8 decoder, served decoding rules, label head; text reading off) with the
           fp32 encoder and with each int8 encoder on the Flickr8k dev split: CIDEr (pycocoevalcap CIDEr-D) on half
           A (dev images in even positions by name), half B (odd) and the whole split, the int8 - fp32 difference
           with a paired bootstrap sd (images resampled, per-image CIDEr), and the share of identical captions.
           Choose on A, confirm on B.
  speed    for the first configuration (or ``--encoder FILE``): the encoder alone (fp32 vs int8, chunks of
           ENCODER_CHUNK as the runtime calls it) and the served path from JPEG bytes (``caption_images``), each
           at 1 and 2 onnxruntime threads, interleaved A B A B over ``--rounds`` rounds

    .venv/bin/python bench/int8_encoder.py --configs minmax,percentile --calib 256 \\
        --json bench/results/int8_encoder.json
    .venv/bin/python bench/int8_encoder.py --encoder models/default/int8/encoder.onnx   # the shipped file

A configuration is ``METHOD[+fp32labels]`` (METHOD: minmax, percentile, entropy; ``+fp32labels``: keep the label
head in fp32), or ``noclip`` (the earlier attempt: Conv alone quantised, min-max, label head fp32), kept to show
what the Clip fix buys. The histogram methods (percentile, entropy) hold every activation of every calibration
photo in memory (~50 MB a photo): use ``--calib 64`` with them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.export.int8_encoder import calibration_arrays, quantise, train_photos  # noqa: E402
from captionbot.inference.bundle import session_options  # noqa: E402
from captionbot.inference.captioner import ENCODER_CHUNK, Captioner  # noqa: E402
from captionbot.training.data import read_flickr8k  # noqa: E402
from captionbot.training.metrics import ptb_tokenize  # noqa: E402

from captionbot.formats import sha256_file  # noqa: E402

BUNDLE = REPO / "models" / "default"
DATA = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data"))
HALVES = ("A", "B", "all")


def with_encoder(threads: int, encoder: Path | None, bundle: Path = BUNDLE) -> Captioner:
    """The served captioner (int8 decoder, served rules, label head) with its encoder session replaced by
    ``encoder`` (None: the bundle's fp32 encoder.onnx)."""
    import onnxruntime as ort

    c = Captioner.load(bundle, variant="int8", provider="cpu", threads=threads, read_text=False)
    c.bundle.encoder = ort.InferenceSession(str(encoder or bundle / "encoder.onnx"),
                                            sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    return c


def build(config: str, out: Path, calib: np.ndarray) -> None:
    method, _, extra = config.partition("+")
    if method == "noclip":
        quantise(BUNDLE / "encoder.onnx", out, calib, "minmax", quantise_labels=False, op_types=("Conv",))
    else:
        quantise(BUNDLE / "encoder.onnx", out, calib, method, quantise_labels=extra != "fp32labels")


def served_captions(c: Captioner, blobs: list[bytes]) -> list[str]:
    return [getattr(o, "caption", "") for i in range(0, len(blobs), 32) for o in c.caption_images(blobs[i : i + 32])]


def per_image_cider(refs: dict[str, list[str]], caps: dict[str, dict[str, str]],
                    ids: list[str]) -> dict[str, np.ndarray]:
    """CIDEr-D of each image's caption, per system, on the set ``ids`` (document frequencies from that set, as
    the corpus score computes them: the corpus score is the mean)."""
    from pycocoevalcap.cider.cider import Cider

    gts = ptb_tokenize({k: refs[k] for k in ids})
    out = {}
    for name, c in caps.items():
        res = ptb_tokenize({k: [c[k]] for k in ids})
        _, scores = Cider().compute_score(gts, res)
        out[name] = np.asarray(scores, dtype=float)
    return out


def paired_bootstrap_sd(a: np.ndarray, b: np.ndarray, draws: int = 2000, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(draws, len(a)))
    return float((b[idx].mean(1) - a[idx].mean(1)).std())


def interleaved(fns: tuple, rounds: int) -> tuple[float, float]:
    """Seconds spent in each of two callables, run A B A B ... ``rounds`` times."""
    secs = [0.0, 0.0]
    for _ in range(rounds):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            secs[k] += time.perf_counter() - t0
    return secs[0], secs[1]


def speed(int8: Path, arrays: np.ndarray, blobs: list[bytes], rounds: int) -> dict[str, float]:
    """Speed ratios int8 / fp32 (images/s), encoder alone and served path, at 1 and 2 threads, ABAB."""
    out: dict[str, float] = {}

    def enc(c: Captioner) -> None:
        for i in range(0, len(arrays), ENCODER_CHUNK):
            c.bundle.encode_with_labels(arrays[i : i + ENCODER_CHUNK])

    for threads in (1, 2):
        pair = (with_encoder(threads, None), with_encoder(threads, int8))
        for c in pair:
            enc(c)  # warm-up
        for part, n, run in (("encoder", len(arrays), enc), ("served", len(blobs), lambda c: c.caption_images(blobs))):
            s32, s8 = interleaved((lambda c=pair[0], r=run: r(c), lambda c=pair[1], r=run: r(c)), rounds)
            out[f"{part}_{threads}t"] = s32 / s8
            out[f"{part}_fp32_images_per_s_{threads}t"] = rounds * n / s32
            out[f"{part}_int8_images_per_s_{threads}t"] = rounds * n / s8
            print(f"{threads} thread(s), {part}: int8 {s32 / s8:.2f}x fp32 ({rounds * n / s32:.1f} -> "
                  f"{rounds * n / s8:.1f} images/s)", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="minmax", help="comma-separated configurations (see the module doc)")
    ap.add_argument("--encoder", type=Path, default=None, help="measure this int8 encoder file instead of building")
    ap.add_argument("--dev", type=int, default=1000, help="dev images to score (first N by name)")
    ap.add_argument("--calib", type=int, default=256, help="train photos to calibrate on")
    ap.add_argument("--seed", type=int, default=0, help="which train photos")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds of each speed test")
    ap.add_argument("--speed-images", type=int, default=32, help="dev photos in each speed round")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    dev = sorted((it for it in read_flickr8k(DATA / "flickr8k") if it.split == "dev"), key=lambda it: it.path.name)
    dev = dev[: args.dev]
    blobs = [it.path.read_bytes() for it in dev]
    refs = {it.image_id: it.captions for it in dev}
    sets = {"A": [it.image_id for it in dev[0::2]], "B": [it.image_id for it in dev[1::2]],
            "all": [it.image_id for it in dev]}
    tmp = tempfile.TemporaryDirectory()
    encoders: dict[str, Path] = {}
    report: dict = {"dev_images": len(dev), "calib_images": args.calib, "seed": args.seed,
                    "load_average_start": os.getloadavg(), "configs": {}}
    if args.encoder:
        encoders[str(args.encoder)] = args.encoder
    else:
        calib = calibration_arrays(BUNDLE, train_photos(DATA, args.calib, args.seed))
        for config in args.configs.split(","):
            encoders[config] = Path(tmp.name) / f"{config}.onnx"
            t0 = time.perf_counter()
            build(config, encoders[config], calib)
            print(f"{config}: quantised in {time.perf_counter() - t0:.0f} s, "
                  f"{encoders[config].stat().st_size / 1e6:.1f} MB", flush=True)
    caps: dict[str, dict[str, str]] = {}
    for name, path in [("fp32", None), *encoders.items()]:
        t0 = time.perf_counter()
        caps[name] = dict(zip((it.image_id for it in dev), served_captions(with_encoder(1, path), blobs), strict=True))
        print(f"captioned {len(dev)} dev photos as served with the {name} encoder in {time.perf_counter() - t0:.0f} s",
              flush=True)
    for half, ids in sets.items():
        per = per_image_cider(refs, caps, ids)
        for name in encoders:
            diff = 100 * (per[name].mean() - per["fp32"].mean())
            same = float(np.mean([caps["fp32"][k] == caps[name][k] for k in ids]))
            sd = 100 * paired_bootstrap_sd(per["fp32"], per[name])
            print(f"{name:22s} dev {half:3s} ({len(ids)}): CIDEr fp32 {100 * per['fp32'].mean():.2f}, int8 "
                  f"{100 * per[name].mean():.2f} ({diff:+.2f} points, bootstrap sd {sd:.2f}); "
                  f"{same:.1%} identical captions", flush=True)
            report["configs"].setdefault(name, {})[f"dev_{half}"] = {
                "images": len(ids), "cider_fp32": 100 * per["fp32"].mean(), "cider_int8": 100 * per[name].mean(),
                "delta": diff, "bootstrap_sd": sd, "identical": same}
    first = next(iter(encoders))
    if not args.no_speed:
        arrays = np.stack([with_encoder(1, None).preprocess(b)[1] for b in blobs[: args.speed_images]])
        report["speed"] = {"encoder": first, **speed(encoders[first], arrays, blobs[: args.speed_images], args.rounds)}
    report["load_average_end"] = os.getloadavg()
    report["encoder_sha256"] = sha256_file(encoders[first])
    r = report["configs"][first]
    report["summary"] = {
        **{f"cider_delta_dev{'' if h == 'all' else '_' + h}": round(r[f"dev_{h}"]["delta"] / 100, 5) for h in HALVES},
        "caption_agreement_dev": round(r["dev_all"]["identical"], 4),
        "images": len(dev), "data": "flickr8k-dev", "as": "served (int8 decoder, served rules, label head)",
        **({f"{part}_speed_{t}t": round(report["speed"][f"{part}_{t}t"], 2) for part in ("encoder", "served")
            for t in (1, 2)} if "speed" in report else {}),
    }
    print(json.dumps(report["summary"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
