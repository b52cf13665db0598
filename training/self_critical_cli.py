"""``captionbot finetune-cider CHECKPOINT --flickr8k DIR --out DIR``: self-critical (CIDEr) fine-tuning."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a cross-entropy checkpoint (e.g. runs/x/best.pt)")
    parser.add_argument("--flickr8k", metavar="DIR", action="append", default=[], type=Path, help="Flickr8k folder")
    parser.add_argument("--coco", metavar=("JSON", "IMGDIR"), nargs=2, action="append", default=[], type=Path,
                        help="COCO caption annotations and their image folder (used for training)")
    parser.add_argument("--val-split", default="dev", help="split to validate on (default: dev)")
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"), help="feature caches (default ./cache)")
    parser.add_argument("--out", type=Path, required=True, help="folder for scst-epochN.pt and scst-best.pt")
    parser.add_argument("--epochs", type=int, default=2, help="epochs over the training images (default 2)")
    parser.add_argument("--lr", type=float, default=2e-5, help="AdamW learning rate (default 2e-5)")
    parser.add_argument("--batch-images", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--samples", type=int, default=5, help="sampled captions per image (default 5)")
    parser.add_argument("--beam", type=int, default=3, help="validation beam size (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-every", type=int, default=0,
                        help="also validate every N batches, keeping the best (default 0: after each epoch only)")
    parser.add_argument("--val-limit", type=int, default=None, help="validate on the first N images of the split")


def main(args: argparse.Namespace) -> int:
    import logging

    log = logging.getLogger("captionbot.finetune")
    if not args.checkpoint.is_file():
        log.error("checkpoint %s does not exist", args.checkpoint)
        return 2
    import tempfile

    from captionbot.training.checkpoint import load_captioner, load_checkpoint
    from captionbot.training.features import FeatureCache
    from captionbot.training.self_critical import SelfCriticalConfig, self_critical
    from captionbot.training.sources import DataSource, read_sources

    sources = [DataSource("flickr8k", (d,)) for d in args.flickr8k] + [DataSource("coco", tuple(p)) for p in args.coco]
    if not sources:
        log.error("no data: give --flickr8k DIR and/or --coco JSON IMGDIR")
        return 2
    items = read_sources(sources)
    train = [im for im in items if im.split not in (args.val_split, "test")]
    val = sorted((im for im in items if im.split == args.val_split), key=lambda im: im.image_id)
    ckpt = load_checkpoint(args.checkpoint)
    arch, paths = ckpt["encoder_arch"], [im.path for im in items]
    cfg = SelfCriticalConfig(epochs=args.epochs, lr=args.lr, batch_images=args.batch_images, samples=args.samples,
                             beam=args.beam, seed=args.seed, threads=args.threads,
                             val_every=args.val_every, val_limit=args.val_limit)
    with tempfile.TemporaryDirectory() as tmp:
        if ckpt.get("encoder_fine_tuned"):  # its own encoder weights: features of its own, for this run only
            model, _ = load_captioner(args.checkpoint)
            cache = FeatureCache.build(Path(tmp) / arch, paths, arch=arch, encoder=model.encoder)
        else:
            cache = FeatureCache.build(args.cache_dir / arch, paths, arch=arch)
        best = self_critical(args.checkpoint, train, val, cache, args.out, cfg)
    print(f"wrote {best}")
    return 0
