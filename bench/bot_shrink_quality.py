"""Does a cheaper shrink in the bot change what the worker makes of the queued copy?

The bot shrinks every image over :data:`captionbot.formats.MODEL_MAX_SIDE` before queueing it
(``bot/image_shrink.py``); its Lanczos resize is the largest part of its CPU cost per phone photo. This compares the
queued copy made with cheaper resize filters against the one shipped before this change (``bench/shrink_reference.py``)
and the decode-once code as shipped now, on what the worker does with it:

* **captions** of ``--n`` 12 MP phone photos made from Flickr8k dev photos (``bench/phone_photos.py``: upscaled
  with grain, every other one stored sideways with EXIF Orientation 6), by the served int8 captioner: the caption
  equals the one of the 12 MP file itself, and the one of the copy shipped before; CIDEr-D against the photos' five
  human references (pycocoevalcap). The first half of the photos chooses, the second half confirms.
* **text** the worker's text reader (``inference/text_reader.py``) reads in large screenshots and text images
  (rendered at run time: phone chat screenshots, a desktop screenshot, the samples of ``tests/text_samples.py``
  enlarged past 1920 px): word recall of the drawn text, and the transcription equal to the one of the copy
  shipped before. The first half of the images chooses, the second half confirms.

    MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824 \\
    .venv/bin/python bench/bot_shrink_quality.py --n 64 --json bench/results/bot_shrink_quality.json
"""

from __future__ import annotations

import argparse
import io
import json
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
from captionbot.bot.image_shrink import prepare_for_queue  # noqa: E402
from phone_photos import phone_photo  # noqa: E402
from text_samples import all_samples, font, line_chart, pie_chart, word_recall  # noqa: E402

from captionbot.formats import MAX_PIXELS  # noqa: E402

DATA = REPO.parent / "shared" / "data"
R = Image.Resampling
VARIANTS: dict[str, Callable[[bytes], bytes]] = {
    "before (Lanczos, checked then decoded again)": lambda d: shrink_reference.prepare_for_queue(d, MAX_PIXELS),
    "now (Lanczos, decoded once)": lambda d: prepare_for_queue(d, MAX_PIXELS),
    "bicubic": lambda d: prepare_for_queue(d, MAX_PIXELS, resample=R.BICUBIC),
    "bilinear": lambda d: prepare_for_queue(d, MAX_PIXELS, resample=R.BILINEAR),
}
BEFORE = next(iter(VARIANTS))


def dev_photos(n: int) -> list[tuple[str, bytes]]:
    """The first ``n`` Flickr8k dev photos by name that are not 224x224 squares (their aspect ratio kept)."""
    root = DATA / "flickr8k"
    out = []
    for name in sorted((root / "Flickr_8k.devImages.txt").read_text().split()):
        data = (root / "images" / name).read_bytes()
        if Image.open(io.BytesIO(data)).size != (224, 224):
            out.append((name, data))
        if len(out) == n:
            break
    return out


LINES = ["Are we still on for dinner tonight", "Yes at seven near the old station",
         "Bring the printed tickets please", "Running late the train stopped twice",
         "Order me the soup and a lemonade", "The meeting moved to Friday morning",
         "Did you see the score last night", "Call me when you land in Berlin"]


def phone_chat(size: tuple[int, int], text_px: int, photo: bytes | None) -> tuple[bytes, str]:
    """A phone chat screenshot (light theme, rounded bubbles), optionally with a shared photo on top."""
    img = Image.new("RGB", size, (245, 245, 245))
    draw = ImageDraw.Draw(img)
    y = 150
    if photo is not None:
        w = size[0] - 120
        img.paste(Image.open(io.BytesIO(photo)).convert("RGB").resize((w, w * 3 // 4)), (60, y))
        y += w * 3 // 4 + 80
    f = font("DejaVuSans.ttf", text_px)
    drawn = []
    for i, line in enumerate(LINES):
        if y + 3 * text_px > size[1]:
            break
        x = 60 if i % 2 else size[0] // 8
        bubble = (220, 235, 255) if i % 2 else "white"
        draw.rounded_rectangle((x, y, size[0] - 60, y + 3 * text_px), text_px, fill=bubble)
        draw.text((x + text_px, y + text_px), line, fill="black", font=f)
        drawn.append(line)
        y += 4 * text_px
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue(), " ".join(drawn)


def desktop(size: tuple[int, int], text_px: int) -> tuple[bytes, str]:
    """A desktop screenshot: a window of prose in small text (shrunk to 1920 px it is 3/4 of its size)."""
    img = Image.new("RGB", size, (40, 44, 52))
    draw = ImageDraw.Draw(img)
    draw.rectangle((200, 120, size[0] - 200, size[1] - 120), fill="white")
    f = font("DejaVuSans.ttf", text_px)
    drawn = []
    y = 160
    for i in range(20):
        line = " ".join(LINES[(i + k) % len(LINES)] for k in range(2))
        draw.text((240, y), line, fill=(20, 20, 20), font=f)
        drawn.append(line)
        y += int(text_px * 1.8)
        if y > size[1] - 200:
            break
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue(), " ".join(drawn)


def enlarged(data: bytes, long_side: int) -> bytes:
    """A text sample redrawn larger (Lanczos), as a high-DPI screen would show it, in its own format."""
    with Image.open(io.BytesIO(data)) as img:
        fmt, scale = str(img.format), long_side / max(img.size)
        big = img.convert("RGB").resize((round(img.width * scale), round(img.height * scale)), R.LANCZOS)
    buf = io.BytesIO()
    big.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def text_images(photos: list[bytes]) -> list[tuple[str, bytes, str]]:
    """(kind, bytes, drawn text), every image over MODEL_MAX_SIDE so the bot shrinks it."""
    out = [("phone chat + photo", *phone_chat((1170, 2532), 34, photos[0])),
           ("phone chat", *phone_chat((1170, 2532), 30, None)),
           ("android chat", *phone_chat((1440, 3120), 40, photos[1])),
           ("desktop 18 px", *desktop((2560, 1440), 18))]
    samples = [*all_samples(photos[2], photos[3]), line_chart(), pie_chart()]
    out += [(f"{s.kind} x{2400 / max(Image.open(io.BytesIO(s.image)).size):.1f}", enlarged(s.image, 2400), s.text)
            for s in samples]
    out += [("phone chat small text", *phone_chat((1170, 2532), 26, photos[4])),
            ("desktop 16 px", *desktop((2880, 1800), 16))]
    return out


def halves(flags: list[bool]) -> tuple[int, int]:
    h = len(flags) // 2
    return sum(flags[:h]), sum(flags[h:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--n", type=int, default=64, help="phone photos (first half chooses, second confirms)")
    ap.add_argument("--skip-text", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from captionbot.inference.captioner import Captioner
    from captionbot.training.data import read_flickr8k
    from captionbot.training.metrics import score_captions

    t_start = time.time()
    photos = dev_photos(args.n)
    names = [n for n, _ in photos]
    print(f"making {args.n} phone-sized photos ...", flush=True)
    phone = [phone_photo(d, sideways=bool(i % 2), seed=i) for i, (_, d) in enumerate(photos)]
    queued = {name: [fn(d) for d in phone] for name, fn in VARIANTS.items()}
    refs = {img.image_id: img.captions for img in read_flickr8k(DATA / "flickr8k") if img.image_id in set(names)}
    c = Captioner.load(args.bundle, variant="int8", provider="cpu", threads=1)
    full = [o.caption for o in c.caption_images(phone)]
    caps = {name: [o.caption for o in c.caption_images(ims)] for name, ims in queued.items()}
    h = args.n // 2

    def cider(cs: list[str], keys: slice) -> float:
        got = dict(zip(names[keys], cs[keys], strict=True))
        return float(score_captions({k: refs[k] for k in got}, got, ("CIDEr",))[0]["CIDEr"] or 0.0)

    report: dict[str, object] = {"n_photos": args.n}
    rows: dict[str, dict[str, object]] = {}
    print(f"\n{'captions of the queued copy':44s} {'same bytes':>10s} {'= 12 MP (A / B)':>15s} "
          f"{'= before (A / B)':>16s} {'CIDEr A / B / all':>20s}")
    for name, cs in {"12 MP file (not what the bot sends)": full, **caps}.items():
        ims = queued.get(name)
        same_bytes = sum(a == b for a, b in zip(ims, queued[BEFORE], strict=True)) if ims else None
        row = {"same_bytes_as_before": same_bytes,
               "same_as_12mp": halves([a == b for a, b in zip(cs, full, strict=True)]),
               "same_as_before": halves([a == b for a, b in zip(cs, caps[BEFORE], strict=True)]),
               "cider": [cider(cs, slice(0, h)), cider(cs, slice(h, None)), cider(cs, slice(None))],
               "kB": sum(map(len, ims or phone)) / len(phone) / 1e3}
        rows[name] = row
        sa, sb = row["same_as_12mp"]  # type: ignore[misc]
        ba, bb = row["same_as_before"]  # type: ignore[misc]
        ca, cb, call = row["cider"]  # type: ignore[misc]
        print(f"{name:44s} {'' if same_bytes is None else f'{same_bytes}/{args.n}':>10s} "
              f"{f'{sa}/{h} / {sb}/{args.n - h}':>15s} {f'{ba}/{h} / {bb}/{args.n - h}':>16s} "
              f"{f'{ca:.3f} / {cb:.3f} / {call:.3f}':>20s}", flush=True)
    report["captions"] = rows
    if not args.skip_text:
        from captionbot.inference.text_reader import TextReader

        reader = TextReader()
        images = text_images([d for _, d in dev_photos(5)])
        th = len(images) // 2
        text_rows: dict[str, dict[str, object]] = {}
        texts = {name: [reader.read(fn(d)) for _, d, _ in images] for name, fn in VARIANTS.items()}
        texts = {"original (not what the bot sends)": [reader.read(d) for _, d, _ in images], **texts}
        print(f"\n{'text read in the queued copy':44s} {'words found (A / B of drawn)':>30s} {'= before (A / B)':>16s}")
        for name, ts in texts.items():
            recall = [word_recall(drawn, t) for (_, _, drawn), t in zip(images, ts, strict=True)]
            found_a, found_b = sum(r[0] for r in recall[:th]), sum(r[0] for r in recall[th:])
            total_a, total_b = sum(r[1] for r in recall[:th]), sum(r[1] for r in recall[th:])
            same = halves([a == b for a, b in zip(ts, texts[BEFORE], strict=True)])
            text_rows[name] = {"words_found": [found_a, found_b], "words_drawn": [total_a, total_b],
                               "same_text_as_before": same, "per_image": [r[0] for r in recall]}
            print(f"{name:44s} {f'{found_a}/{total_a} / {found_b}/{total_b}':>30s} "
                  f"{f'{same[0]}/{th} / {same[1]}/{len(images) - th}':>16s}", flush=True)
        report["text"] = {"images": [k for k, _, _ in images], "by_variant": text_rows}
    report["seconds"] = round(time.time() - t_start)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
