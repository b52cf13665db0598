"""``captionbot train``: train a Show-Attend-Tell captioner on cached encoder features.

Light imports only at the top: torch is loaded when the command runs, not when ``captionbot --help`` is built.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
examples:
  captionbot train --flickr8k ../shared/data/flickr8k --out runs/flickr8k --bf16
  captionbot train --flickr8k ../shared/data/flickr8k --coco CAPTIONS.json IMGDIR --out runs/mixed
  captionbot train --flickr8k ../shared/data/flickr8k --out runs/flickr8k --resume runs/flickr8k/last.pt
  torchrun --nproc_per_node 2 -m captionbot.cli train --flickr8k ../shared/data/flickr8k --out runs/ddp

Writes OUT/last.pt (every epoch), OUT/best.pt (best validation CIDEr), OUT/history.json and TensorBoard logs in
OUT/tb (tensorboard --logdir OUT/tb). The encoder is frozen: every image is encoded once into --cache-dir.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    data = parser.add_argument_group("data (repeatable; at least one)")
    data.add_argument("--flickr8k", metavar="DIR", action="append", default=[], type=Path,
                      help="Flickr8k folder: Flickr8k.token.txt, Flickr_8k.*Images.txt, images/")
    data.add_argument("--coco", metavar=("JSON", "IMGDIR"), nargs=2, action="append", default=[], type=Path,
                      help="COCO caption annotations and their image folder (used for training)")
    data.add_argument("--karpathy", metavar=("JSON", "IMGDIR"), nargs=2, action="append", default=[], type=Path,
                      help="Karpathy dataset_*.json and its image folder (its train/val/test splits are kept)")
    data.add_argument("--val-split", default="dev", help="split to validate on (default: dev; Karpathy val = dev)")
    data.add_argument("--val-limit", type=int, default=None,
                      help="validate on the first N images of the split (default: all; 0 turns validation off)")
    data.add_argument("--min-count", type=int, default=5, help="words seen fewer times become <unk> (default: 5)")
    data.add_argument("--max-len", type=int, default=22, help="longest caption in words; longer ones are left out")
    data.add_argument("--flip-augment", action="store_true",
                      help="also train on mirrored images (second feature cache), with left/right swapped")

    model = parser.add_argument_group("model")
    model.add_argument("--encoder", default="efficientnet_lite0",
                       help="efficientnet_lite0 (default), efficientnet_lite1/2, resnet101, vgg16")
    model.add_argument("--cache-dir", type=Path, default=Path("cache"),
                       help="feature cache folder; one cache per encoder inside (default: ./cache)")
    model.add_argument("--embed", type=int, default=512, help="word embedding size (default: 512)")
    model.add_argument("--hidden", type=int, default=512, help="LSTM size (default: 512)")
    model.add_argument("--attention", type=int, default=512, help="attention MLP size (default: 512)")
    model.add_argument("--dropout", type=float, default=0.5, help="dropout before the output layer (default: 0.5)")
    model.add_argument("--fine-tune-blocks", type=int, default=0,
                       help="train the encoder's top N blocks too, on cached activations of the blocks below "
                            "(default 0: frozen encoder, cached features)")
    model.add_argument("--encoder-lr-scale", type=float, default=0.1,
                       help="with --fine-tune-blocks: encoder learning rate = --lr x this (default 0.1)")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--out", type=Path, required=True, help="output folder for checkpoints and logs")
    opt.add_argument("--epochs", type=int, default=20, help="maximum number of epochs (default: 20)")
    opt.add_argument("--batch-size", type=int, default=64, help="captions per batch (per process; default: 64)")
    opt.add_argument("--lr", type=float, default=4e-4, help="peak AdamW learning rate (default: 4e-4)")
    opt.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default: 0.01)")
    opt.add_argument("--warmup-steps", type=int, default=200, help="linear warm-up steps before cosine decay")
    opt.add_argument("--grad-clip", type=float, default=5.0, help="clip the gradient norm to this (default: 5)")
    opt.add_argument("--alpha-c", type=float, default=1.0,
                     help="weight of the doubly-stochastic attention regulariser (default: 1.0; 0 turns it off)")
    opt.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing (default: 0)")
    opt.add_argument("--word-dropout", type=float, default=0.0, metavar="P",
                     help="replace teacher-forced input words by <unk> with probability P (default 0)")
    opt.add_argument("--feature-dropout", type=float, default=0.0, metavar="P",
                     help="dropout on the region features the decoder reads (default 0)")
    opt.add_argument("--bf16", action="store_true", help="bfloat16 autocast (about 2x faster on CPUs with AVX512-BF16)")
    opt.add_argument("--beam", type=int, default=3, help="beam size for validation captions (default: 3)")
    opt.add_argument("--keep-epochs", action="store_true",
                     help="also keep OUT/epochN.pt for every epoch (for `captionbot average`)")
    opt.add_argument("--patience", type=int, default=5,
                     help="stop after this many epochs without a better validation CIDEr (default: 5)")
    opt.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    opt.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1 …")
    opt.add_argument("--threads", type=int, default=None,
                     help="torch CPU threads (default: all cores; on a busy machine 1 can be several times faster)")
    opt.add_argument("--resume", type=Path, default=None, help="continue exactly from a checkpoint (OUT/last.pt)")
    opt.add_argument("--init-from", type=Path, default=None,
                     help="start from this checkpoint's weights and vocabulary, with a new optimiser and schedule "
                          "(e.g. fine-tune the encoder's top blocks of a trained model)")
    opt.add_argument("--max-steps-per-epoch", type=int, default=None, help=argparse.SUPPRESS)
    opt.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def main(args: argparse.Namespace) -> int:
    import logging
    import os

    from captionbot.training.sources import DataSource
    from captionbot.training.train import TrainConfig, train

    log = logging.getLogger("captionbot.train")
    sources = [DataSource("flickr8k", (d,)) for d in args.flickr8k]
    sources += [DataSource("coco", tuple(p)) for p in args.coco]
    sources += [DataSource("karpathy", tuple(p)) for p in args.karpathy]
    if not sources:
        log.error("no data: give at least one of --flickr8k DIR, --coco JSON IMGDIR, --karpathy JSON IMGDIR")
        return 2
    for src in sources:
        missing = [p for p in src.paths if not p.exists()]
        if missing:
            log.error("--%s: %s does not exist", src.kind, missing[0])
            return 2
    cfg = TrainConfig(
        out_dir=args.out, encoder=args.encoder, cache_dir=args.cache_dir, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
        grad_clip=args.grad_clip, embed_dim=args.embed, hidden_dim=args.hidden, attention_dim=args.attention,
        dropout=args.dropout, min_count=args.min_count, max_len=args.max_len, alpha_c=args.alpha_c,
        label_smoothing=args.label_smoothing, word_dropout=args.word_dropout,
        feature_dropout=args.feature_dropout, bf16=args.bf16,
        flip_augment=args.flip_augment, fine_tune_blocks=args.fine_tune_blocks,
        encoder_lr_scale=args.encoder_lr_scale, init_from=args.init_from, beam_size=args.beam,
        patience=args.patience, keep_epochs=args.keep_epochs, seed=args.seed,
        val_split=args.val_split, val_limit=args.val_limit, device=args.device, threads=args.threads,
        resume=args.resume,
        max_steps_per_epoch=args.max_steps_per_epoch, progress=not args.no_progress,
    )
    result = train(cfg, sources)
    if int(os.environ.get("RANK", "0")) == 0:
        log.info("done: best validation CIDEr %.4f at epoch %d; checkpoints in %s", result.best_score,
                 result.best_epoch, args.out)
    return 0
