"""More than one caption (diverse beam search, ``/caption variants:3``) on the Flickr8k dev split (1,000 photos):
distinct words in one caption per photo vs in all its variants, and CIDEr of the first variant vs today's caption
(they must agree: the first variant is the unpenalised group), and of the other variants.

The diversity penalty λ is chosen on half A (first 500 photos by image id) and confirmed on half B: the λ with the
most distinct words over all variants whose variants keep a mean CIDEr within 25% of the first caption's.

    .venv/bin/python bench/variants.py --out bench/results/variants.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.inference.captioner import Captioner  # noqa: E402
from captionbot.inference.described import describe_arrays  # noqa: E402
from captionbot.inference.variants import variant_options  # noqa: E402
from captionbot.training.data import read_flickr8k  # noqa: E402
from captionbot.training.metrics import score_captions  # noqa: E402

CHUNK = 32
KEEP_CIDER = 0.75  # a λ qualifies when its variants' mean CIDEr is at least this share of the first caption's


def words(sentence: str) -> list[str]:
    return re.findall(r"[a-z]+", sentence.lower())


def distinct(captions: list[str]) -> int:
    return len({w for c in captions for w in words(c)})


def cider(refs: dict[str, list[str]], caps: dict[str, str]) -> float:
    return float(score_captions({k: refs[k] for k in caps}, caps, ("CIDEr",))[0]["CIDEr"] or 0.0)


def run(captioner: Captioner, arrays, options) -> tuple[list[list[str]], float]:
    """Each photo's captions (first = the caption shown) and seconds taken."""
    assert captioner.labels is not None
    start = time.perf_counter()
    out = []
    for i in range(0, len(arrays), CHUNK):
        for d in describe_arrays(captioner.bundle, captioner.labels, arrays[i : i + CHUNK], options):
            out.append([d.caption, *(c for c, _ in d.alternatives)])
    return out, time.perf_counter() - start


def summary(names: list[str], refs: dict[str, list[str]], today: dict[str, str], found: dict[str, list[str]],
            n: int) -> dict[str, float]:
    first = {k: found[k][0] for k in names}
    others = [(k, c) for k in names for c in found[k][1:n]]
    # every other variant scored against its photo's references, as one corpus (a photo with two others counts twice)
    other_refs = {f"{k}#{j}": refs[k] for j, (k, _) in enumerate(others)}
    other_cider = cider(other_refs, {f"{k}#{j}": c for j, (k, c) in enumerate(others)}) if others else 0.0
    return {
        "photos": len(names),
        "distinct_words_one_caption": distinct([today[k] for k in names]),
        "distinct_words_first_variant": distinct(list(first.values())),
        "distinct_words_all_variants": distinct([c for k in names for c in found[k][:n]]),
        "distinct_words_human_one_reference": distinct([refs[k][0] for k in names]),
        "distinct_words_human_all_references": distinct([c for k in names for c in refs[k]]),
        "mean_variants_per_photo": sum(min(len(found[k]), n) for k in names) / len(names),
        "cider_today": cider(refs, {k: today[k] for k in names}),
        "cider_first_variant": cider(refs, first),
        "cider_other_variants": other_cider,
        "first_variant_same_as_today": sum(first[k] == today[k] for k in names) / len(names),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--lambdas", default="0.25,0.5,1.0,2.0")
    ap.add_argument("--variants", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="only the first N dev photos (a quick look)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data"))
    images = sorted((im for im in read_flickr8k(data / "flickr8k") if im.split == "dev"), key=lambda im: im.image_id)
    if args.limit:
        images = images[: args.limit]
    captioner = Captioner.load(args.bundle, provider="cpu")
    import numpy as np

    arrays = np.stack([a for _, a in captioner.preprocess_many([im.path.read_bytes() for im in images])])
    names = [im.image_id for im in images]
    refs = {im.image_id: im.captions for im in images}
    half = len(names) // 2
    halves = {"A": names[:half], "B": names[half:], "all": names}

    plain, plain_s = run(captioner, arrays, captioner.options)
    today = {k: caps[0] for k, caps in zip(names, plain, strict=True)}
    report: dict[str, object] = {"command": "bench/variants.py " + " ".join(sys.argv[1:]), "beam_size":
                                 captioner.options.beam_size, "seconds_today": plain_s, "lambdas": {}}
    print(f"today's captions: {plain_s:.0f} s for {len(names)} photos", flush=True)
    for lam in (float(x) for x in args.lambdas.split(",")):
        options = replace(variant_options(captioner.options, args.variants), diversity=lam)
        found_list, secs = run(captioner, arrays, options)
        found = dict(zip(names, found_list, strict=True))
        rows = {h: summary(part, refs, today, found, args.variants) for h, part in halves.items()}
        report["lambdas"][str(lam)] = {"seconds": secs, **rows}  # type: ignore[index]
        a = rows["A"]
        print(f"λ={lam}: {secs:.0f} s; " + "; ".join(
            f"{h} words one {r['distinct_words_one_caption']} / all variants {r['distinct_words_all_variants']}, "
            f"CIDEr today {r['cider_today']:.3f} first {r['cider_first_variant']:.3f} "
            f"others {r['cider_other_variants']:.3f}, {r['mean_variants_per_photo']:.2f} variants/photo"
            for h, r in rows.items())
            + f" (A qualifies: {a['cider_other_variants'] >= KEEP_CIDER * a['cider_first_variant']})",
            flush=True)
    qualified = {lam: r for lam, r in report["lambdas"].items()  # type: ignore[attr-defined]
                 if r["A"]["cider_other_variants"] >= KEEP_CIDER * r["A"]["cider_first_variant"]}
    if qualified:
        chosen = max(qualified, key=lambda lam: qualified[lam]["A"]["distinct_words_all_variants"])
        report["chosen_on_A"] = chosen
        print(f"chosen on half A: λ={chosen}; half B: {json.dumps(qualified[chosen]['B'])}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
