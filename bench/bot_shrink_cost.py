"""The bot's CPU cost per image before it queues a job, before vs after decode-once, as a ratio in one run.

"Before" is the check + shrink as shipped before this change (``bench/shrink_reference.py``: ``probe_image`` decodes
the file to check it, then ``shrink_for_models`` decodes it again, PNG copies at zlib's default level). "After" is
``bot/image_shrink.py``'s ``prepare_for_queue`` as shipped now (the shrink's decode is the check; PNG copies at
level 3; a copy that reaches the original's size is abandoned as it is written). Both run on the same images in
the same process, interleaved (``--rounds`` rounds, each timing A then B over a set, the order swapped every
round), timed as this process's CPU time (``time.process_time``: the bot's CPU, not wall time on a shared
machine). Reported per set: ms per image (median of the rounds) and the median of the per-round after/before
ratios; and what the worker receives: the same bytes, the same pixels, or which one sent the file as it came.

Sets (made at run time from ../shared/data, nothing committed): 12 MP phone JPEGs from Flickr8k dev photos
(``bench/phone_photos.py``, every other one sideways with EXIF); screenshots (phone and desktop, rendered, PNG:
``bench/bot_shrink_quality.py``); other PNGs over 1920 px (text samples enlarged, a photo) and under it (checked
only); GIFs (animated and still, big and small); small JPEGs (Flickr8k photos as they are: checked only).

    .venv/bin/python bench/bot_shrink_cost.py --n 16 --rounds 6 --candidates --json bench/results/bot_shrink_cost.json

``--candidates`` also times the resize filters that were measured and not shipped (bicubic, bilinear instead of
Lanczos), as a ratio to "before" in the same rounds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

import shrink_reference  # noqa: E402
from bot_shrink_quality import desktop, dev_photos, enlarged, phone_chat  # noqa: E402
from captionbot.bot.image_shrink import prepare_for_queue  # noqa: E402
from phone_photos import phone_photo  # noqa: E402
from text_samples import all_samples, font, line_chart, pie_chart  # noqa: E402

from captionbot.formats import MAX_PIXELS  # noqa: E402

Shrink = Callable[[bytes], bytes]
BEFORE: Shrink = lambda d: shrink_reference.prepare_for_queue(d, MAX_PIXELS)  # noqa: E731
AFTER: Shrink = lambda d: prepare_for_queue(d, MAX_PIXELS)  # noqa: E731
CANDIDATES: dict[str, Shrink] = {  # cheaper resize filters: not shipped (bench/bot_shrink_quality.py)
    "bicubic": lambda d: prepare_for_queue(d, MAX_PIXELS, resample=Image.Resampling.BICUBIC),
    "bilinear": lambda d: prepare_for_queue(d, MAX_PIXELS, resample=Image.Resampling.BILINEAR),
}


def encode(img: Image.Image, fmt: str, **opts: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **opts)
    return buf.getvalue()


def animation(size: tuple[int, int], frames: int) -> bytes:
    """A GIF of ``frames`` coloured frames with lines of text (each frame costs bytes)."""
    ims = [Image.new("RGB", size, c) for c in ("red", "green", "blue", "white", "yellow", "grey")[:frames]]
    f = font("DejaVuSans.ttf", max(12, size[0] // 60))
    for i, im in enumerate(ims):
        ImageDraw.Draw(im).text((40, 40 + i * 30), "frame " * 40, fill="black", font=f)
    return encode(ims[0], "GIF", save_all=True, append_images=ims[1:], duration=100)


def image_sets(n: int) -> dict[str, list[bytes]]:
    photos = [d for _, d in dev_photos(max(n, 6))]
    samples = [*all_samples(photos[2], photos[3]), line_chart(), pie_chart()]
    pngs = [s.image for s in samples if s.image.startswith(b"\x89PNG")]
    small_gif = Image.open(io.BytesIO(photos[4])).quantize(256)
    big_photo = Image.open(io.BytesIO(photos[0])).convert("RGB").resize((2400, 1800), Image.Resampling.BICUBIC)
    return {
        "phone photos (12 MP JPEG)": [phone_photo(d, sideways=bool(i % 2), seed=i) for i, d in enumerate(photos[:n])],
        "screenshots (PNG)": [phone_chat((1170, 2532), 34, photos[0])[0], phone_chat((1440, 3120), 40, photos[1])[0],
                              phone_chat((1170, 2532), 30, None)[0], desktop((2560, 1440), 18)[0]],
        "PNGs over 1920 px": [enlarged(p, 2400) for p in pngs] + [encode(big_photo, "PNG")],
        "PNGs within 1920 px (checked only)": pngs,
        "GIFs": [animation((2400, 1800), 4), animation((480, 360), 4),
                 encode(big_photo.quantize(256), "GIF"), encode(small_gif, "GIF")],
        "small JPEGs (checked only)": photos[:n],
    }


def cpu_ms(fn: Shrink, images: list[bytes]) -> float:
    t0 = time.process_time()
    for d in images:
        fn(d)
    return 1000 * (time.process_time() - t0) / len(images)


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGBA").tobytes() + repr(img.size).encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="phone photos (and small JPEGs)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--candidates", action="store_true",
                    help="also time the resize filters that were not shipped (after/before ratio each)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    candidates = CANDIDATES if args.candidates else {}
    sets = image_sets(args.n)
    load_start = os.getloadavg()
    report: dict[str, object] = {"rounds": args.rounds, "load_start": load_start, "sets": {}}
    print(f"load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    print(f"{'set':36s} {'n':>3s} {'before ms':>9s} {'after ms':>8s} {'after/before':>12s} {'rounds':>22s} "
          f"{'same bytes':>10s} {'same pixels':>11s} {'sent as it came (before, after)':>32s}")
    for name, images in sets.items():
        before, after = [BEFORE(d) for d in images], [AFTER(d) for d in images]  # also warms up
        same_bytes = sum(a == b for a, b in zip(before, after, strict=True))
        same_pixels = sum(pixels(a) == pixels(b) for a, b in zip(before, after, strict=True))
        as_came = (sum(b == d for b, d in zip(before, images, strict=True)),
                   sum(a == d for a, d in zip(after, images, strict=True)))
        fns = {"before": BEFORE, "after": AFTER, **candidates}
        ms: dict[str, list[float]] = {k: [] for k in fns}
        for r in range(args.rounds):
            for k in list(fns) if r % 2 == 0 else list(fns)[::-1]:  # A B (C D) then (D C) B A
                ms[k].append(cpu_ms(fns[k], images))
        ms_a, ms_b = ms["before"], ms["after"]
        ratios = [b / a for a, b in zip(ms_a, ms_b, strict=True)]
        row = {"n": len(images), "before_ms": statistics.median(ms_a), "after_ms": statistics.median(ms_b),
               "ratio_median": statistics.median(ratios), "ratios": ratios, "same_bytes": same_bytes,
               "same_pixels": same_pixels, "sent_as_it_came": as_came,
               "kB_before": sum(map(len, before)) / len(images) / 1e3,
               "kB_after": sum(map(len, after)) / len(images) / 1e3,
               "candidates_ratio_median": {k: statistics.median(c / a for a, c in zip(ms_a, ms[k], strict=True))
                                           for k in candidates}}
        report["sets"][name] = row  # type: ignore[index]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        print(f"{name:36s} {len(images):3d} {row['before_ms']:9.1f} {row['after_ms']:8.1f} "
              f"{row['ratio_median']:11.2f}x {spread:>22s} {same_bytes:6d}/{len(images):<3d} "
              f"{same_pixels:7d}/{len(images):<3d} {as_came!s:>32s}"
              + "".join(f"  {k} {v:.2f}x" for k, v in row["candidates_ratio_median"].items()), flush=True)
    report["load_end"] = os.getloadavg()
    print(f"load average at end {report['load_end']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
