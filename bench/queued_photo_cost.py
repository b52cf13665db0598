"""What a phone photo costs the worker once the bot has shrunk it, and whether another encoding of the shrunk copy
would cost less with the same caption.

The bot queues a 12 MP phone photo as ``bot/image_shrink.py`` makes it (long side ``formats.MODEL_MAX_SIDE``,
upright, JPEG quality 90). The worker then decodes it with a JPEG draft scale chosen for the encoder's 224x224
input (``Image.draft``: the largest of 1/2, 1/4, 1/8 that still covers 224 on both sides) and resizes. This script
makes ``--n`` phone photos from real Flickr8k dev photos (``bench/phone_photos.py``, every other one sideways with
EXIF Orientation), and for the bot's encoding and a few alternatives reports:

  kB           the queued file's size
  shrink ms    the bot's cost to make it (its header/integrity check included for the shipped encoding)
  draft        the size the worker decodes it at
  decode ms    the worker's decode + resize + normalise (``Captioner.preprocess``), interleaved with the 12 MP
               originals and with Flickr8k photos, median of ``--repeats``
  same caption the served caption (int8, served rules) equals the 12 MP original's, per half of the photos: the
               first half chooses, the second confirms; equals the shipped shrink's; equals the caption of the
               small Flickr8k photo the phone photo was made from (the picture the model was trained on), all photos

    MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824 \\
    .venv/bin/python bench/queued_photo_cost.py --n 64 --json bench/results/queued_photo_cost.json
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from captionbot.bot.image_shrink import prepare_for_queue  # noqa: E402
from captionbot.inference.captioner import Captioner  # noqa: E402
from phone_photos import phone_photo  # noqa: E402

from captionbot.formats import MAX_PIXELS, MODEL_MAX_SIDE  # noqa: E402


def dev_photos(n: int, aspect_kept: bool) -> list[bytes]:
    root = REPO.parent / "shared" / "data" / "flickr8k"
    out = []
    for name in sorted((root / "Flickr_8k.devImages.txt").read_text().split()):
        data = (root / "images" / name).read_bytes()
        if not aspect_kept or Image.open(io.BytesIO(data)).size != (224, 224):
            out.append(data)
        if len(out) == n:
            break
    return out


def alternative(side: int, resample: Image.Resampling = Image.Resampling.LANCZOS,
                **save: object) -> Callable[[bytes], bytes]:
    """The bot's steps (1/2-scale draft, EXIF, Lanczos to ``side``) with another size, filter or JPEG options."""
    def shrink(data: bytes) -> bytes:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            scale = side / max(w, h)
            img.draft("RGB", (int(w * scale), int(h * scale)))
            frame = ImageOps.exif_transpose(img).convert("RGB")
        frame.thumbnail((side, side), resample)
        buf = io.BytesIO()
        frame.save(buf, "JPEG", **save)
        return buf.getvalue()
    return shrink


ENCODINGS: dict[str, Callable[[bytes], bytes]] = {
    "bot (shipped)": lambda d: prepare_for_queue(d, MAX_PIXELS),
    "q90 (the bot's steps, no check)": alternative(MODEL_MAX_SIDE, quality=90),
    "q85": alternative(MODEL_MAX_SIDE, quality=85),
    "q80": alternative(MODEL_MAX_SIDE, quality=80),
    "q90 optimised Huffman": alternative(MODEL_MAX_SIDE, quality=90, optimize=True),
    "q90 progressive": alternative(MODEL_MAX_SIDE, quality=90, progressive=True),
    "1792 (8 x 224) q90": alternative(1792, quality=90),
    "bicubic resize q90": alternative(MODEL_MAX_SIDE, Image.Resampling.BICUBIC, quality=90),
    "bilinear resize q90": alternative(MODEL_MAX_SIDE, Image.Resampling.BILINEAR, quality=90),
}


def decode_ms(c: Captioner, sets: dict[str, list[bytes]], repeats: int) -> dict[str, float]:
    """Median over ``repeats`` interleaved passes of each set's mean ``preprocess`` time, ms per image."""
    per: dict[str, list[float]] = {k: [] for k in sets}
    for _ in range(repeats):
        for name, ims in sets.items():
            t0 = time.perf_counter()
            for d in ims:
                c.preprocess(d)
            per[name].append(1000 * (time.perf_counter() - t0) / len(ims))
    return {k: float(np.median(v)) for k, v in per.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--n", type=int, default=64, help="phone photos (first half chooses, second confirms)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    c = Captioner.load(args.bundle, variant="int8", provider="cpu", threads=1)
    print(f"making {args.n} phone-sized photos ...", flush=True)
    sources = dev_photos(args.n, True)
    phone = [phone_photo(d, sideways=bool(i % 2), seed=i) for i, d in enumerate(sources)]
    flickr = dev_photos(args.n, False)
    queued: dict[str, list[bytes]] = {}
    shrink_ms: dict[str, float] = {}
    for name, fn in ENCODINGS.items():
        t0 = time.perf_counter()
        queued[name] = [fn(d) for d in phone]
        shrink_ms[name] = 1000 * (time.perf_counter() - t0) / len(phone)
    c.caption_images(phone[:2] + flickr[:2])  # warm-up
    ms = decode_ms(c, {"12 MP original": phone, "Flickr8k": flickr, **queued}, args.repeats)
    ref = [o.caption for o in c.caption_images(phone)]
    half = args.n // 2
    report: dict[str, dict[str, object]] = {}
    shipped = [o.caption for o in c.caption_images(queued["bot (shipped)"])]
    source = [o.caption for o in c.caption_images(sources)]
    print(f"\n{'':34s} {'kB':>6s} {'shrink ms':>9s} {'draft':>9s} {'decode ms':>9s} "
          f"{'same as 12 MP (choose / confirm)':>33s} {'as shipped':>10s} {'as source':>10s}")
    for name, ims in {"12 MP original": phone, "Flickr8k": flickr, **queued}.items():
        with Image.open(io.BytesIO(ims[0])) as img:
            img.draft("RGB", (c.input_size[1], c.input_size[0]))
            draft = f"{img.size[0]}x{img.size[1]}"
        row: dict[str, object] = {"kB": np.mean([len(d) for d in ims]) / 1e3, "decode_ms": ms[name], "draft": draft,
                                  "shrink_ms": shrink_ms.get(name)}
        same = ""
        if name != "Flickr8k":
            caps = ref if name == "12 MP original" else [o.caption for o in c.caption_images(ims)]
            hits = [a == b for a, b in zip(caps, ref, strict=True)]
            row["same_choose"], row["same_confirm"] = sum(hits[:half]), sum(hits[half:])
            row["same_as_shipped"] = sum(a == b for a, b in zip(caps, shipped, strict=True))
            row["same_as_source"] = sum(a == b for a, b in zip(caps, source, strict=True))
            same = (f"{sum(hits[:half])}/{half} / {sum(hits[half:])}/{args.n - half} "
                    f"{row['same_as_shipped']:7d}/{args.n} {row['same_as_source']:7d}/{args.n}")
        report[name] = row
        sm = f"{shrink_ms[name]:9.0f}" if name in shrink_ms else f"{'':9s}"
        print(f"{name:34s} {row['kB']:6.0f} {sm} {draft:>9s} {ms[name]:9.2f} {same:>55s}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
