"""How many bits may two pHashes differ by and still be "the same image"? (captionbot.bot.image_hash.MATCH_DISTANCE)

Takes N Flickr8k photos (sorted by name), splits them into halves (even / odd positions), and for every photo
measures the hash distance to copies a chat would make of it (JPEG re-encoded at quality 60 and 90, resized to
50 % and 25 %, longest side 1280 as Discord's previews do, PNG) and to the nearest *other* photo of its half. The
bar is chosen on the first half and confirmed on the second: twice the worst same-image distance plus 2 bits
(room for harsher re-encodings than these), but never more than half the distance to the closest different photo
(a wrong match shows one person's correction on someone else's picture, far worse than a missed repost).
Writes a JSON report.

    .venv/bin/python bench/phash_threshold.py --data ../shared/data/flickr8k/images --n 400 \
        --out bench/results/phash_threshold.json
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from captionbot.bot.image_hash import distance, perceptual_hash
from PIL import Image


def variants(data: bytes) -> dict[str, bytes]:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    out = {}

    def save(name: str, im: Image.Image, fmt: str = "JPEG", **kw: int) -> None:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out[name] = buf.getvalue()

    save("jpeg_q60", img, quality=60)
    save("jpeg_q90", img, quality=90)
    w, h = img.size
    save("half", img.resize((w // 2, h // 2), Image.Resampling.LANCZOS), quality=85)
    save("quarter", img.resize((w // 4, h // 4), Image.Resampling.LANCZOS), quality=85)
    scale = 1280 / max(w, h)
    save("long_1280", img.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC), quality=85)
    save("png", img, "PNG")
    return out


def measure(paths: list[Path]) -> dict[str, object]:
    hashes = [perceptual_hash(p.read_bytes()) for p in paths]
    same: dict[str, list[int]] = {}
    for p, h in zip(paths, hashes, strict=True):
        for name, data in variants(p.read_bytes()).items():
            same.setdefault(name, []).append(distance(h, perceptual_hash(data)))
    nearest_other = [min(distance(h, o) for j, o in enumerate(hashes) if j != i) for i, h in enumerate(hashes)]
    return {"same_max": {k: max(v) for k, v in same.items()}, "same_all": same, "nearest_other": nearest_other}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    paths = sorted(args.data.glob("*.jpg"))[: args.n]
    first, second = measure(paths[0::2]), measure(paths[1::2])
    closest_other = min(first["nearest_other"])  # type: ignore[type-var]
    worst_same = max(first["same_max"].values())  # type: ignore[union-attr]
    bar = min(2 * worst_same + 2, closest_other // 2)
    report: dict[str, object] = {"n_per_half": len(paths[0::2]), "chosen_on_first_half": {
        "worst_same_image_distance": worst_same, "closest_different_photo": closest_other, "bar": bar}}
    for name, half in (("first", first), ("second", second)):
        same_all = half["same_all"]
        n_same = sum(len(v) for v in same_all.values())  # type: ignore[union-attr]
        matched = sum(d <= bar for v in same_all.values() for d in v)  # type: ignore[union-attr]
        false = sum(d <= bar for d in half["nearest_other"])  # type: ignore[union-attr]
        report[name] = {"same_image_copies_matched": f"{matched}/{n_same}", "different_photos_matched": false,
                        "worst_same_by_variant": half["same_max"], "closest_different_photo":
                            min(half["nearest_other"])}  # type: ignore[type-var]
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
