"""``captionbot average CKPT... --out FILE``: average the weights of several checkpoints of one run."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", type=Path, nargs="+", help="checkpoints of one run (e.g. its last 3 epochs)")
    parser.add_argument("--out", type=Path, required=True, help="averaged checkpoint to write")


def main(args: argparse.Namespace) -> int:
    missing = [p for p in args.checkpoints if not p.is_file()]
    if missing:
        print(f"error: no such checkpoint: {', '.join(map(str, missing))}")
        return 2
    from captionbot.training.average import average_checkpoints

    try:
        out = average_checkpoints(list(args.checkpoints), args.out)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    print(f"wrote {out} (mean of {len(args.checkpoints)} checkpoints)")
    return 0
