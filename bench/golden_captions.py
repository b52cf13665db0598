"""What the served path answers for N Flickr8k dev photos, written down so that a speed-up can be checked to change
not a single output: each photo's caption, words, score, confidence, labels, text read, the sha256 of its attention
maps and of its heatmap PNG, and its three variant captions (diverse beam search) with their confidences.

The file is keyed by what decides those answers: the sha256 of the bundle's graph files that the variant loads,
its vocabulary, labels and language models, and its decoding policy (:func:`bundle_key`). A bundle whose files
change (a retrained model, an int8 encoder added to the int8 variant) no longer matches its key, and
``tests/inference/test_served_captions_unchanged.py`` says so instead of comparing; rewrite the file from the
commit before the speed-up then.

    .venv/bin/python bench/golden_captions.py [--photos 64] [--variants fp32 int8] \
        [--out tests/inference/golden_captions.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


from captionbot.inference.bundle import read_manifest, variant_paths  # noqa: E402
from captionbot.inference.captioner import Captioner, CaptionOutput  # noqa: E402

from captionbot.formats import ImageRejected  # noqa: E402

DEV = REPO.parent / "shared" / "data" / "flickr8k"
DEFAULT_OUT = REPO / "tests" / "inference" / "golden_captions.json"


def dev_photos(n: int, root: Path = DEV) -> list[tuple[str, bytes]]:
    """The first ``n`` Flickr8k dev photos by name, with their bytes (``root``: the flickr8k data folder)."""
    names = sorted((root / "Flickr_8k.devImages.txt").read_text().split())[:n]
    return [(name, (root / "images" / name).read_bytes()) for name in names]


def bundle_key(bundle_dir: Path, variant: str) -> dict[str, Any]:
    """What decides a variant's answers: its graph files' sha256 (the fp32 ones where the variant has none), the
    vocabulary's, labels' and language models', and the decoding policy."""
    manifest = read_manifest(bundle_dir)
    graphs = {name: manifest.files[path.relative_to(bundle_dir).as_posix()]
              for name, path in variant_paths(bundle_dir, manifest, variant).items()}
    others = {name: sha for name, sha in manifest.files.items() if not name.endswith(".onnx")}
    decoding = None if manifest.decoding is None else manifest.decoding.to_dict()
    return {"variant": variant, "graphs": graphs, "files": others, "decoding": decoding}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record(out: CaptionOutput | ImageRejected) -> dict[str, Any]:
    """One answer as plain JSON values; arrays and PNGs as sha256 (floats keep every bit through ``repr``)."""
    if isinstance(out, ImageRejected):
        return {"rejected": str(out)}
    return {
        "caption": out.caption, "words": out.words, "score": out.score, "confidence": out.confidence,
        "labels": [[w, p] for w, p in out.labels], "text": out.text,
        "alphas": f"{_sha(out.alphas.tobytes())}:{out.alphas.dtype}:{list(out.alphas.shape)}",
        "heatmap": _sha(out.heatmap_png) if out.heatmap_png is not None else None,
        "variants": [[s, c] for s, c in out.variants],
    }


def served_answers(captioner: Captioner, photos: list[bytes], batch: int = 32,
                   heatmaps: int = 8) -> dict[str, list[dict[str, Any]]]:
    """The served answers for ``photos`` in batches of ``batch``: as captioned ("captions"), with three variants
    each ("variants3"), and for the first ``heatmaps`` photos with heatmaps ("heatmap": a heatmap takes ~20 times
    as long as its caption)."""
    out: dict[str, list[dict[str, Any]]] = {"captions": [], "variants3": [], "heatmap": []}
    for i in range(0, len(photos), batch):
        chunk = photos[i : i + batch]
        out["captions"] += [record(o) for o in captioner.caption_images(chunk)]
        out["variants3"] += [record(o) for o in captioner.caption_images(chunk, variants=3)]
    for i in range(0, heatmaps, batch):
        out["heatmap"] += [record(o) for o in captioner.caption_images(photos[i : min(i + batch, heatmaps)],
                                                                       heatmap=True)]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--photos", type=int, default=64)
    ap.add_argument("--variants", nargs="+", default=["fp32", "int8"])
    ap.add_argument("--heatmaps", type=int, default=8, help="photos whose heatmaps are recorded (the first ones)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    photos = dev_photos(args.photos)
    doc: dict[str, Any] = {"photos": [name for name, _ in photos], "heatmaps": args.heatmaps, "runs": []}
    for variant in args.variants:
        captioner = Captioner.load(args.bundle, variant=variant, provider="cpu", threads=args.threads)
        answers = served_answers(captioner, [data for _, data in photos], heatmaps=args.heatmaps)
        doc["runs"].append({"key": bundle_key(args.bundle, variant), "answers": answers})
        print(f"{variant}: {len(photos)} photos", flush=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
