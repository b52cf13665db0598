"""Where the served path spends its time, stage by stage, on Flickr8k dev photos and on phone-sized photos, both
as 12 MP files and as the bot queues them (shrunk by its own ``prepare_for_queue``, ``bot/image_shrink.py``, before
the timed rounds: the worker never receives a 12 MP file from the bot).

The worker's path (``Captioner.caption_images`` with the default bundle, int8 decoder, served decoding rules), cut
into its stages and timed one after another on one thread (decoding is normally spread over the decode threads;
here it runs serially so each stage's cost is its own):

  open+draft+load   Pillow reads the header, picks the JPEG DCT scale (``Image.draft``) and decodes
  exif              ``ImageOps.exif_transpose`` (phone photos: turned upright)
  rgb               conversion to RGB
  blank check       ``describe_blank`` (64x64 nearest-neighbour samples)
  resize            bilinear to the encoder's 224x224
  normalise         uint8 -> float32, mean/std, HWC -> CHW
  encoder+labels    the ONNX encoder with its label head, chunks of ``ENCODER_CHUNK``
  label table       top labels, text likelihood (the text gate's input), entropy
  decoder init      the ONNX decoder-init graph
  decoder steps     ONNX decoder-step calls inside the free beam search
  search (numpy)    the rest of the free beam search (masking, top-k, bookkeeping)
  guided pass       the label-guided second search (its decoder steps included) and confidence

Batches alternate between the photo sets (ABCABC) so machine load hits them alike; shares are per set.

    .venv/bin/python bench/served_path_profile.py [--rounds 4] [--threads 1] [--json bench/results/served_path.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from captionbot.bot.image_shrink import prepare_for_queue  # noqa: E402
from captionbot.inference import beam_search as bs  # noqa: E402
from captionbot.inference.blank import describe_blank  # noqa: E402
from captionbot.inference.captioner import ENCODER_CHUNK, Captioner  # noqa: E402
from captionbot.inference.guided import SERVED_POLICY, guide_captions  # noqa: E402
from captionbot.inference.labels import entropy  # noqa: E402
from captionbot.inference.preprocess import _open, _to_rgb, to_array  # noqa: E402
from phone_photos import phone_photos  # noqa: E402

from captionbot.formats import MAX_PIXELS, SpecialIds  # noqa: E402

BATCH = 32


def flickr_dev(n: int, aspect_kept: bool = False) -> list[bytes]:
    """The first ``n`` Flickr8k dev photos by name (``aspect_kept``: only those that kept their aspect ratio)."""
    root = REPO.parent / "shared" / "data" / "flickr8k"
    names = sorted((root / "Flickr_8k.devImages.txt").read_text().split())
    out = []
    for name in names:
        data = (root / "images" / name).read_bytes()
        if aspect_kept and Image.open(io.BytesIO(data)).size == (224, 224):
            continue
        out.append(data)
        if len(out) == n:
            break
    return out


class Clock:
    """Seconds per stage name, summed."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[name] += time.perf_counter() - t0


def profile_batch(c: Captioner, images: list[bytes], clock: Clock) -> list[str]:
    """One batch through the served path, stage by stage; returns the captions."""
    size = c.input_size
    arrays = []
    for data in images:
        with clock.stage("open+draft+load"):
            img = _open(data, c.max_pixels)
            if img.format in ("JPEG", "MPO"):
                img.draft("RGB", (size[1], size[0]))
            img.load()
        with clock.stage("exif"):
            img = ImageOps.exif_transpose(img)
        with clock.stage("rgb"):
            img = _to_rgb(img)
        with clock.stage("blank check"):
            describe_blank(img)
        with clock.stage("resize"):
            resized = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        with clock.stage("normalise"):
            arrays.append(to_array(resized, size, c.mean, c.std))
    batch = np.stack(arrays)
    bundle, options = c.bundle, c.options
    with clock.stage("encoder+labels"):
        enc = [bundle.encode_with_labels(batch[i : i + ENCODER_CHUNK]) for i in range(0, len(batch), ENCODER_CHUNK)]
        feats = np.concatenate([f for f, _ in enc])
        probs = np.concatenate([p for _, p in enc if p is not None])
    assert c.labels is not None, "the profile follows the label-head path of the default bundle"
    with clock.stage("label table"):
        labels = c.labels.top(probs)
        c.labels.text_mass(probs)
        entropy(probs)
    with clock.stage("decoder init"):
        rows, h, cc, att = bundle.search_inputs(feats)  # per-image features where the step gathers rows itself
    step_seconds = [0.0]

    def step(*args):
        t0 = time.perf_counter()
        out = bundle.step(*args)
        step_seconds[0] += time.perf_counter() - t0
        return out

    t0 = time.perf_counter()
    free = bs.beam_search(step, rows, h, cc, att, options, SpecialIds.of(bundle.itos))
    search = time.perf_counter() - t0
    clock.seconds["decoder steps"] += step_seconds[0]
    clock.seconds["search (numpy)"] += search - step_seconds[0]
    with clock.stage("guided pass"):
        guided = guide_captions(bundle, feats, free, labels, options, SERVED_POLICY)
    return [" ".join(g.words) for g in guided]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--variant", default="int8")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    c = Captioner.load(args.bundle, variant=args.variant, provider="cpu", threads=args.threads)
    small = flickr_dev(BATCH * args.rounds)
    print(f"making {BATCH} phone-sized photos (~12 MP JPEGs) from Flickr8k dev photos ...", flush=True)
    phone = phone_photos(flickr_dev(BATCH, aspect_kept=True))
    print(f"phone photos: {np.mean([len(d) for d in phone]) / 1e6:.2f} MB mean JPEG size", flush=True)
    queued = [prepare_for_queue(d, MAX_PIXELS) for d in phone]
    print(f"as the bot queues them: {np.mean([len(d) for d in queued]) / 1e6:.2f} MB mean JPEG size", flush=True)
    clocks = {"flickr8k": Clock(), "phone": Clock(), "phone as queued": Clock()}
    counts = dict.fromkeys(clocks, 0)
    profile_batch(c, small[:4], Clock())  # warm-up
    for r in range(args.rounds):
        for name in clocks:
            ims = {"flickr8k": small[r * BATCH : (r + 1) * BATCH], "phone": phone}.get(name, queued)
            profile_batch(c, ims, clocks[name])
            counts[name] += len(ims)
    report = {}
    for name, clock in clocks.items():
        total = sum(clock.seconds.values())
        print(f"\n{name}: {counts[name]} images, {counts[name] / total:.1f} images/s serial "
              f"({args.threads} onnxruntime thread(s))")
        for stage, s in clock.seconds.items():
            print(f"  {stage:18s} {1000 * s / counts[name]:8.2f} ms/image {100 * s / total:6.1f}%")
        report[name] = {"images": counts[name], "images_per_s": counts[name] / total,
                        "ms_per_image": {k: 1000 * v / counts[name] for k, v in clock.seconds.items()}}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
