"""Is the heatmap an explanation? Attention of a bundle on Flickr8k dev photos, as served (issue 19):

- normalised entropy of each word's map, H(alpha) / ln P (1.0 = uniform over the P grid cells), over all words
  and over content words (``inference/attention_words.py``), and the mean peak weight (uniform: 1/P);
- distance between the maps of two different content words of one caption: total variation, 0.5 * sum |a - b|
  (0 = the same map, 1 = no overlap), averaged over every pair in every caption;
- deletion (as in RISE): for each content word, grey out the ``--k`` grid cells its attention ranks highest and
  re-run the encoder and the decoder teacher-forced on the served caption, then the same for ``--random`` draws of
  ``k`` random cells; the fall in the word's probability, top-attended vs random. The ratio of the mean falls is
  the deletion ratio (> 1: the attended regions mattered more than random ones), with a 95 % bootstrap interval
  over images. ``--mask features`` instead replaces those cells' *features* by the image's mean feature (no
  re-encoding): a diagnostic of whether the decoder relies on the cells it attends to, as opposed to whether
  those cells' features come from the pixels beneath them.
- ``--display-temperatures 0.5,0.3``: the entropy, peak and distance again for each map *as a heatmap would show
  it* sharpened, alpha ** (1 / T) renormalised (= softmax(scores / T): the same cells in the same order, so the
  deletion test, which ranks cells, is unchanged; the captions are the model's own, unlike a temperature in the
  graph, which changes the attention the decoder reads).

Captions are the served ones (``Captioner``: bundle policy, beam 3, label-guided where it applies); an image
whose
caption uses a word outside the decoder's vocabulary (a guided label word) cannot be teacher-forced and is
skipped (counted). Photos are the dev split sorted by name, ``--offset``/``--n`` of them.

    MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824 \\
      .venv/bin/python bench/attention_faithfulness.py --n 200 --out bench/results/attention_faithfulness.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.inference.attention_words import content_indices, is_flat  # noqa: E402
from captionbot.inference.bundle import Bundle  # noqa: E402
from captionbot.inference.captioner import ENCODER_CHUNK, Captioner, CaptionOutput  # noqa: E402

from captionbot.formats import SPECIAL_IDS  # noqa: E402


def encode(bundle: Bundle, arrays: np.ndarray) -> np.ndarray:
    return np.concatenate([bundle.encode(arrays[i : i + ENCODER_CHUNK]) for i in range(0, len(arrays), ENCODER_CHUNK)])


def teacher_forced(bundle: Bundle, feats: np.ndarray, tokens: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Features [N,P,C] and one caption's word ids -> (probability of each word [N,T], attention [N,T,P])."""
    n = len(feats)
    h, c, att_proj = bundle.init(feats)
    word = np.full(n, SPECIAL_IDS.start, dtype=np.int64)
    probs, alphas = [], []
    for tok in tokens:
        log_probs, h, c, alpha = bundle.step(word, h, c, feats, att_proj)
        probs.append(np.exp(log_probs[:, tok]))
        alphas.append(alpha)
        word = np.full(n, tok, dtype=np.int64)
    return np.stack(probs, 1), np.stack(alphas, 1)


def masked(array: np.ndarray, cells: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A copy of a preprocessed image [3,H,W] with ``cells`` (flat grid indices) set to 0 (mid-grey)."""
    out = array.copy()
    ch, cw = array.shape[1] / grid[0], array.shape[2] / grid[1]
    for cell in cells:
        r, c = divmod(int(cell), grid[1])
        out[:, round(r * ch) : round((r + 1) * ch), round(c * cw) : round((c + 1) * cw)] = 0.0
    return out


def entropy(alpha: np.ndarray) -> float:
    a = np.clip(np.asarray(alpha, dtype=np.float64), 1e-12, None)
    return float(-(a * np.log(a)).sum() / np.log(a.size))


def sharpened(alpha: np.ndarray, temperature: float) -> np.ndarray:
    """``alpha ** (1 / temperature)`` renormalised: softmax of the same scores at that temperature."""
    log_a = np.log(np.clip(np.asarray(alpha, dtype=np.float64), 1e-30, None)) / temperature
    a = np.exp(log_a - log_a.max())
    return a / a.sum()


def display_stats(maps: list[tuple[list[str], list[int], np.ndarray]], temperature: float) -> dict:
    """Entropy (content words), peak and content-pair distance of every caption's maps sharpened to ``temperature``."""
    ent, peaks, dists = [], [], []
    for words, idx, alphas in maps:
        sharp = [sharpened(a, temperature) for a in alphas]
        ent += [entropy(sharp[i]) for i in idx]
        peaks += [float(a.max()) for a in sharp]
        dists += [tv(sharp[i], sharp[j]) for i, j in combinations(idx, 2) if words[i] != words[j]]
    return {"temperature": temperature, "entropy_content_words": round(float(np.mean(ent)), 4),
            "peak_weight": round(float(np.mean(peaks)), 4), "content_pair_tv": round(float(np.mean(dists)), 4)}


def tv(a: np.ndarray, b: np.ndarray) -> float:
    return float(0.5 * np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).sum())


def feature_masked(feats: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """A copy of one image's features [P,C] with ``cells`` replaced by the mean feature over all cells."""
    out = feats.copy()
    out[np.asarray(cells, dtype=int)] = feats.mean(axis=0)
    return out


def measure(cap: Captioner, names: list[str], images: Path, k: int, n_random: int, seed: int,
            mask: str = "pixels", display_temperatures: tuple[float, ...] = ()) -> dict:
    bundle, grid = cap.bundle, cap.grid
    stoi = {w: i for i, w in enumerate(bundle.itos)}
    rng = np.random.default_rng(seed)
    ent_all, ent_content, peaks, dists, flat = [], [], [], [], []
    per_image: list[tuple[float, float]] = []  # (sum of top falls, sum of random falls) per image
    words_scored = skipped = 0
    examples = []
    maps: list[tuple[list[str], list[int], np.ndarray]] = []  # (words, content indices, teacher-forced attention)
    for start in range(0, len(names), 16):
        chunk = names[start : start + 16]
        blobs = [(images / n).read_bytes() for n in chunk]
        outs = cap.caption_images(blobs)
        for name, blob, out in zip(chunk, blobs, outs, strict=True):
            assert isinstance(out, CaptionOutput), f"{name} was refused"
            words = out.words
            if not words or any(w not in stoi for w in words):
                skipped += 1
                continue
            tokens = [stoi[w] for w in words]
            _, arr = cap.preprocess(blob)
            idx = content_indices(words)
            base = encode(bundle, arr[None])[0] if mask == "features" else arr

            def hide(cells: np.ndarray, base: np.ndarray = base) -> np.ndarray:
                return feature_masked(base, cells) if mask == "features" else masked(base, cells, grid)

            variants = [base]
            for i in idx:
                order = np.argsort(-out.alphas[i])
                variants.append(hide(order[:k]))
                variants += [hide(rng.choice(grid[0] * grid[1], k, replace=False)) for _ in range(n_random)]
            stacked = np.stack(variants)
            feats = stacked if mask == "features" else encode(bundle, stacked)
            probs, alphas = teacher_forced(bundle, feats, tokens)
            base_alphas = alphas[0]
            maps.append((words, idx, base_alphas))
            ent_all += [entropy(a) for a in base_alphas]
            ent_content += [entropy(base_alphas[i]) for i in idx]
            peaks += [float(a.max()) for a in base_alphas]
            flat += [is_flat(base_alphas[i]) for i in idx]
            pair_d = [tv(base_alphas[i], base_alphas[j]) for i, j in combinations(idx, 2) if words[i] != words[j]]
            dists += pair_d
            top_sum = rand_sum = 0.0
            for m, i in enumerate(idx):
                row = 1 + m * (1 + n_random)
                p0 = probs[0, i]
                top_sum += p0 - probs[row, i]
                rand_sum += float(np.mean(p0 - probs[row + 1 : row + 1 + n_random, i]))
                words_scored += 1
            if idx:
                per_image.append((top_sum, rand_sum))
            if len(examples) < 5:
                examples.append({"image": name, "caption": out.caption,
                                 "content_word_entropy": [round(entropy(base_alphas[i]), 3) for i in idx],
                                 "pair_tv": [round(d, 3) for d in pair_d]})
    tops = np.array([t for t, _ in per_image])
    rands = np.array([r for _, r in per_image])
    ratio = float(tops.sum() / rands.sum())
    boot = []
    for _ in range(1000):
        s = rng.integers(0, len(per_image), len(per_image))
        boot.append(tops[s].sum() / rands[s].sum())
    return {
        "images": len(names) - skipped, "skipped_out_of_vocab": skipped, "content_words_scored": words_scored,
        "grid_cells": grid[0] * grid[1],
        "entropy_all_words": round(float(np.mean(ent_all)), 4),
        "entropy_content_words": round(float(np.mean(ent_content)), 4),
        "peak_weight": round(float(np.mean(peaks)), 4), "uniform_weight": round(1 / (grid[0] * grid[1]), 4),
        "content_maps_flat": round(float(np.mean(flat)), 4),  # alt text says "across the whole image"
        "content_pair_tv": round(float(np.mean(dists)), 4), "content_pairs": len(dists),
        "deletion_mask": mask, "deletion_k": k, "deletion_random_draws": n_random,
        "deletion_top_fall": round(float(tops.sum() / words_scored), 4),
        "deletion_random_fall": round(float(rands.sum() / words_scored), 4),
        "deletion_ratio": round(ratio, 3),
        "deletion_ratio_ci95": [round(float(np.percentile(boot, 2.5)), 3), round(float(np.percentile(boot, 97.5)), 3)],
        "display": [display_stats(maps, temp) for temp in display_temperatures],
        "examples": examples,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--n", type=int, default=200, help="dev photos (sorted by name) to use")
    ap.add_argument("--offset", type=int, default=0, help="skip this many dev photos first")
    ap.add_argument("--k", type=int, default=5, help="grid cells masked per word (5 of 49: about a tenth)")
    ap.add_argument("--random", type=int, default=3, help="random masks per word")
    ap.add_argument("--mask", choices=("pixels", "features"), default="pixels",
                    help="grey the image's cells (default) or replace their features by the mean feature")
    ap.add_argument("--display-temperatures", default="",
                    help="comma-separated T: also measure the maps sharpened to softmax(scores / T) for display")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data"))
    names = sorted((data / "flickr8k/Flickr_8k.devImages.txt").read_text().split())[args.offset : args.offset + args.n]
    temps = tuple(float(x) for x in args.display_temperatures.split(",") if x.strip())
    cap = Captioner.load(args.bundle, provider="cpu", threads=args.threads, read_text=False)
    t = time.perf_counter()
    result = {"bundle": str(args.bundle), "offset": args.offset, **measure(cap, names, data / "flickr8k/images",
                                                                            args.k, args.random, args.seed,
                                                                            args.mask, temps)}
    result["seconds"] = round(time.perf_counter() - t, 1)
    print(json.dumps({k: v for k, v in result.items() if k != "examples"}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
