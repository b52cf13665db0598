"""Build the bundle's caption language models (``inference/caption_lm.py``) from caption text: interpolated
Kneser-Ney word trigrams (Chen & Goodman 1998, one discount per order) over the decoder's vocabulary (other words
become ``<unk>``), trigrams seen fewer than ``min_tri`` times pruned into their back-off; one of the target text
(COCO captions without images) and one of the source text (Flickr8k train captions), in one file.

    .venv/bin/python -m captionbot.export.caption_lm models/default --out /tmp/caption_lm.npz
"""

from __future__ import annotations

import argparse
import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from captionbot.formats import SPECIAL_IDS

LM_FILE = "caption_lm.npz"
DISCOUNT = 0.75
UNIFORM_SHARE = 0.01  # of the unigram mass spread evenly, so no word has probability 0


TARGET_TEXT = "coco/annotations/captions_val2017_text_only.json"
SOURCE = "Flickr8k train captions (what the decoder learnt from)"
TARGET = "23,949 COCO val2017 captions of 4,787 photos outside the dev set, text only"


def target_texts(data: Path) -> list[str]:
    """How people describe everyday photos: the COCO captions that come without images (none of a dev photo)."""
    coco = json.loads((data / TARGET_TEXT).read_text(encoding="utf-8"))
    return [a["caption"] for a in coco["annotations"]]


def source_texts(data: Path) -> list[str]:
    """The Flickr8k training captions (never a dev or test caption)."""
    root = data / "flickr8k"
    train = set((root / "Flickr_8k.trainImages.txt").read_text().split())
    texts = []
    for line in (root / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        name, _, caption = line.partition("\t")
        if name.split("#")[0] in train:
            texts.append(caption)
    return texts


def _pack(groups: dict[int, dict[int, float]], n_ctx: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                          np.ndarray]:
    """{context: {word: p}} -> (context keys, offsets, words int16, probs float16) sorted by context."""
    keys = np.array(sorted(groups), dtype=np.int64) if n_ctx is None else np.arange(n_ctx, dtype=np.int64)
    offsets, words, probs = [0], [], []
    for k in keys:
        entries = sorted(groups.get(int(k), {}).items())
        words += [w for w, _ in entries]
        probs += [p for _, p in entries]
        offsets.append(len(words))
    return keys, np.array(offsets, np.int64), np.array(words, np.int16), np.array(probs, np.float16)


def build(sentences: Iterable[Sequence[int]], vocab_size: int, min_tri: int = 2, discount: float = DISCOUNT,
          start: int = SPECIAL_IDS.start, end: int = SPECIAL_IDS.end) -> dict[str, np.ndarray]:
    """Word-id sentences (without <start>/<end>) -> the arrays of ``caption_lm.npz``."""
    V, d = vocab_size, discount
    tri: Counter[tuple[int, int, int]] = Counter()
    for sent in sentences:
        seq = [start, start, *sent, end]
        tri.update(zip(seq, seq[1:], seq[2:], strict=False))
    # middle and lowest orders use continuation counts (distinct left words), as Kneser-Ney does
    bi_cont: Counter[tuple[int, int]] = Counter((v, w) for (_, v, w) in tri)
    uni_cont: Counter[int] = Counter(w for (_, w) in bi_cont)
    total = sum(uni_cont.values())
    unigram = np.full(V, UNIFORM_SHARE / V)
    for w, n in uni_cont.items():
        unigram[w] += (1 - UNIFORM_SHARE) * n / total
    bi_ctx: Counter[int] = Counter()
    for (v, _), n in bi_cont.items():
        bi_ctx[v] += n
    bi: dict[int, dict[int, float]] = {}
    for (v, w), n in bi_cont.items():
        bi.setdefault(v, {})[w] = max(n - d, 0.0) / bi_ctx[v]
    bi_gamma = np.ones(V)
    for v, entries in bi.items():
        bi_gamma[v] = 1.0 - sum(entries.values())
    tri_ctx: Counter[int] = Counter()
    for (u, v, _), n in tri.items():
        tri_ctx[u * V + v] += n
    tr: dict[int, dict[int, float]] = {}
    for (u, v, w), n in tri.items():
        if n >= min_tri:
            tr.setdefault(u * V + v, {})[w] = (n - d) / tri_ctx[u * V + v]
    tri_keys, tri_offsets, tri_words, tri_probs = _pack(tr, None)
    tri_gamma = np.array([1.0 - sum(tr[int(k)].values()) for k in tri_keys], np.float32)
    _, bi_offsets, bi_words, bi_probs = _pack(bi, V)
    return {"unigram": unigram.astype(np.float32), "bi_gamma": bi_gamma.astype(np.float32), "bi_offsets": bi_offsets,
            "bi_words": bi_words, "bi_probs": bi_probs, "tri_keys": tri_keys, "tri_gamma": tri_gamma,
            "tri_offsets": tri_offsets, "tri_words": tri_words, "tri_probs": tri_probs}


def encode(texts: Iterable[str], itos: Sequence[str], max_len: int) -> list[list[int]]:
    """Captions -> word ids under the bundle's tokenizer and vocabulary (at most ``max_len`` words)."""
    from captionbot.training.data import tokenize

    stoi = {w: i for i, w in enumerate(itos)}
    return [[stoi.get(w, SPECIAL_IDS.unk) for w in tokenize(t)][:max_len] for t in texts]


def to_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    named: dict[str, Any] = dict(arrays)
    np.savez_compressed(buf, **named)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, help="the bundle whose vocabulary the LMs use")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--min-tri", type=int, default=2, help="keep trigrams seen at least this often")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("CAPTIONBOT_DATA", "../shared/data")))
    ap.add_argument("--into", type=Path, default=None, help="also add the file to this bundle and reseal it")
    ap.add_argument("--weight", type=float, default=0.2, help="the policy's lm_weight (with --into)")
    ap.add_argument("--max-free-score", type=float, default=-1.1, help="the policy's lm_max_free_score")
    ap.add_argument("--model-version", default=None, help="new model_version (with --into)")
    args = ap.parse_args(argv)
    itos = json.loads((args.bundle / "vocab.json").read_text(encoding="utf-8"))["itos"]
    max_len = json.loads((args.bundle / "manifest.json").read_text(encoding="utf-8"))["decoder"]["max_len"]
    arrays = {}
    for side, texts in (("target", target_texts(args.data)), ("source", source_texts(args.data))):
        built = build(encode(texts, itos, max_len), len(itos), args.min_tri)
        arrays.update({f"{side}_{k}": v for k, v in built.items()})
        print(f"{side}: {len(texts)} captions, {len(built['bi_words'])} bigrams, {len(built['tri_words'])} trigrams")
    args.out.write_bytes(to_bytes(arrays))
    print(f"{args.out}: {args.out.stat().st_size} bytes")
    if args.into is not None:
        add_to_bundle(args.into, args.out, args.weight, args.max_free_score, args.model_version)
        print(f"{args.into}: manifest lm and decoding policy set, resealed")
    return 0


def add_to_bundle(bundle: Path, lm_file: Path, weight: float, max_free_score: float,
                  model_version: str | None = None) -> None:
    """Copy ``lm_file`` into ``bundle`` as ``caption_lm.npz``, declare it in the manifest (``lm``, its sha256, the
    decoding policy's ``lm_weight`` / ``lm_max_free_score``) and reseal the manifest's digest."""
    from dataclasses import replace

    from captionbot.inference.caption_lm import DomainRatio

    from captionbot import formats

    manifest = formats.Manifest.from_json((bundle / formats.MANIFEST_FILE).read_text(encoding="utf-8"))
    itos = json.loads((bundle / formats.VOCAB_FILE).read_text(encoding="utf-8"))["itos"]
    DomainRatio.load(lm_file, len(itos))  # refuses a file that does not fit the vocabulary
    target = bundle / LM_FILE
    if lm_file.resolve() != target.resolve():
        target.write_bytes(lm_file.read_bytes())
    manifest.files[LM_FILE] = formats.sha256_file(target)
    manifest.lm = {"file": LM_FILE, "kind": "kn-trigram-ratio", "target": TARGET, "source": SOURCE,
                   "built_by": "python -m captionbot.export.caption_lm"}
    policy = manifest.decoding or formats.DecodingPolicy()
    manifest.decoding = replace(policy, lm_weight=weight, lm_max_free_score=max_free_score)
    if model_version:
        manifest.model_version = model_version
    (bundle / formats.MANIFEST_FILE).write_text(manifest.to_json() + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
