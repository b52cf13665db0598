"""``captionbot train``: train a Show-Attend-Tell captioner on cached encoder features.

Light imports only at the top: torch is loaded when the command runs, not when ``captionbot --help`` is built.
The training options are generated from ``TrainConfig``'s fields (``train_config.py``); only the data sources are
written here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from captionbot.training.dataclass_options import add_options, from_options
from captionbot.training.train_config import DATA, TrainConfig

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
    add_options(parser, TrainConfig, groups={DATA: data})


def main(args: argparse.Namespace) -> int:
    import logging
    import os

    from captionbot.training.sources import DataSource
    from captionbot.training.train import train

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
    cfg = from_options(TrainConfig, args)
    result = train(cfg, sources)
    if int(os.environ.get("RANK", "0")) == 0:
        log.info("done: best validation CIDEr %.4f at epoch %d; checkpoints in %s", result.best_score,
                 result.best_epoch, cfg.out_dir)
    return 0
