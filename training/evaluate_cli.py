"""``captionbot evaluate``: caption a split with beam search and score it with the COCO caption metrics.

MODEL is a training checkpoint (``.pt``; decoded in torch on cached encoder features) or a model bundle folder
(decoded by the ONNX runtime, torch-free, from the images themselves). Light imports only at the top.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
examples:
  captionbot evaluate runs/flickr8k/best.pt --flickr8k ../shared/data/flickr8k --split dev --beam 3
  captionbot evaluate models/default --flickr8k ../shared/data/flickr8k --split dev --limit 200 --out eval.json

Writes the scores (BLEU-1..4, METEOR, ROUGE-L, CIDEr; SPICE is reported unavailable) to --out as JSON and the
caption of every image next to it (*.captions.json). Needs Java (the PTB tokenizer and METEOR run on it).
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("model", type=Path, help="checkpoint file (.pt) or model bundle folder")
    parser.add_argument("--flickr8k", metavar="DIR", action="append", default=[], type=Path, help="Flickr8k folder")
    parser.add_argument("--coco", metavar=("JSON", "IMGDIR"), nargs=2, action="append", default=[], type=Path,
                        help="COCO caption annotations and image folder (all its images count as split 'train')")
    parser.add_argument("--karpathy", metavar=("JSON", "IMGDIR"), nargs=2, action="append", default=[], type=Path,
                        help="Karpathy dataset_*.json and image folder")
    parser.add_argument("--split", default="dev", help="split to score (default: dev; Karpathy val = dev)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of the split (by name)")
    parser.add_argument("--beam", type=int, default=3, help="beam size (default: 3)")
    parser.add_argument("--no-repeat", action="store_true", help="never let a word follow itself")
    parser.add_argument("--as-served", action="store_true",
                        help="bundles only: decode with the rules users get (the bundle's decoding policy: no empty "
                             "caption, no repeated word or trigram), instead of the evaluated search rules")
    parser.add_argument("--metrics", default="BLEU,METEOR,ROUGE_L,CIDEr,SPICE",
                        help="comma-separated subset of BLEU,METEOR,ROUGE_L,CIDEr,SPICE")
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"),
                        help="feature caches for checkpoints (as `captionbot train`; default ./cache)")
    parser.add_argument("--variant", default="fp32", help="bundle variant (fp32, int8, fp16) for bundles")
    parser.add_argument("--out", type=Path, default=None,
                        help="report JSON (default: next to MODEL, eval-SPLIT-beamK.json)")


def main(args: argparse.Namespace) -> int:
    import logging

    from captionbot.training.sources import DataSource, read_sources

    log = logging.getLogger("captionbot.evaluate")
    if not args.model.exists():
        log.error("%s does not exist", args.model)
        return 2
    sources = [DataSource("flickr8k", (d,)) for d in args.flickr8k]
    sources += [DataSource("coco", tuple(p)) for p in args.coco]
    sources += [DataSource("karpathy", tuple(p)) for p in args.karpathy]
    if not sources:
        log.error("no data: give --flickr8k DIR, --coco JSON IMGDIR or --karpathy JSON IMGDIR")
        return 2
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    images = sorted((im for im in read_sources(sources) if im.split == args.split), key=lambda im: im.image_id)
    images = images[: args.limit] if args.limit else images
    if not images:
        log.error("no images in split %r", args.split)
        return 2
    if args.model.is_dir():
        report = _evaluate_bundle(args, images, metrics)
    else:
        report = _evaluate_checkpoint(args, images, metrics)
    default_dir = args.model if args.model.is_dir() else args.model.parent
    out = args.out or default_dir / f"eval-{args.split}-beam{args.beam}.json"
    report.write(out)
    print(report.summary())
    for name, note in report.notes.items():
        print(f"{name}: {note}")
    print(f"report: {out}")
    return 0


def _evaluate_checkpoint(args: argparse.Namespace, images: list, metrics: tuple[str, ...]):
    import tempfile

    from captionbot.training.checkpoint import load_captioner, load_checkpoint
    from captionbot.training.evaluate import evaluate_images
    from captionbot.training.features import FeatureCache

    model, vocab = load_captioner(args.model)
    arch, paths = model.encoder.arch, [im.path for im in images]
    with tempfile.TemporaryDirectory() as tmp:
        if load_checkpoint(args.model).get("encoder_fine_tuned"):  # its own encoder weights: features of its own
            cache = FeatureCache.build(Path(tmp) / arch, paths, arch=arch, encoder=model.encoder)
        else:  # frozen pretrained encoder: the shared cache holds exactly its features
            cache = FeatureCache.build(args.cache_dir / arch, paths, arch=arch)
        return evaluate_images(model.decoder, cache.get, images, vocab, args.beam, metrics, split=args.split,
                               no_repeat=args.no_repeat, progress=True)


def _evaluate_bundle(args: argparse.Namespace, images: list, metrics: tuple[str, ...]):
    import numpy as np
    from captionbot.inference.beam_search import BeamOptions
    from captionbot.inference.bundle import load_bundle
    from captionbot.inference.captioner import caption_arrays, served_options
    from captionbot.inference.preprocess import decode_image, to_array
    from captionbot.training.evaluate import EvaluationReport
    from captionbot.training.metrics import score_captions

    bundle = load_bundle(args.model, variant=args.variant)
    enc = bundle.manifest.encoder
    if args.as_served:  # the rules the bot's users get
        options = served_options(bundle, args.beam)
    else:  # the evaluated search rules (min_words 0), as the PyTorch evaluation uses
        options = BeamOptions(beam_size=args.beam, max_len=bundle.manifest.decoder.max_len,
                              block_repeated_word=args.no_repeat)
    captions: dict[str, str] = {}
    for i in range(0, len(images), 32):
        chunk = images[i : i + 32]
        arrays = np.stack([to_array(decode_image(im.path.read_bytes(), size=enc.input_size), enc.input_size,
                                    enc.mean, enc.std) for im in chunk])
        for im, hyp in zip(chunk, caption_arrays(bundle, arrays, options), strict=True):
            captions[im.image_id] = " ".join(bundle.itos[t] for t in hyp.tokens)
    scores, notes = score_captions({im.image_id: im.captions for im in images}, captions, metrics)
    return EvaluationReport(args.split, args.beam, len(images), scores, notes, captions)
