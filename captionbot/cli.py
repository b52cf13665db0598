"""The ``captionbot`` command: one entry point, one subcommand per job, dispatched to the packages.

Each subcommand lives in a module that exposes ``configure(parser)`` and ``main(args) -> int`` and keeps its
top-level imports light (no torch, discord or onnxruntime at import), so ``captionbot --help`` is instant and
the bot and worker never load torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). A module that does not exist yet is left out of the command.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("captionbot.bot.run_cli",
            "run the bot and a worker (embedded queue and local Discord stand-in by default)"),
    "bot": ("captionbot.bot.bot_cli", "run the Discord bot only (needs a queue shared with workers)"),
    "worker": ("captionbot.inference.worker_cli", "run a caption worker that serves the Redis stream"),
    "caption": ("captionbot.inference.caption_cli", "caption image files with a model bundle"),
    "train": ("captionbot.training.train_cli", "train a Show-Attend-Tell captioner"),
    "evaluate": ("captionbot.training.evaluate_cli", "score a checkpoint or bundle with the COCO caption metrics"),
    "average": ("captionbot.training.average_cli", "average the weights of several checkpoints of one run"),
    "export": ("captionbot.export.export_cli", "export a checkpoint to an ONNX model bundle (with parity checks)"),
    "standin": ("captionbot.bot.standin_cli", "run the local Discord stand-in server on its own"),
    "feedback": ("captionbot.bot.feedback_cli", "export a server's corrected descriptions as a training dataset"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captionbot", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default: $CAPTIONBOT_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that part is not built (or not installed) here
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    from pydantic import ValidationError

    from captionbot.process import EXIT_CANNOT_START, setup_logging
    from captionbot.settings import explain, load_settings

    try:  # every setting is checked before any command starts: a bad one is one line and exit code 2
        settings = load_settings()
    except ValidationError as exc:
        print(f"captionbot {args.command} cannot start: {explain(exc)}", file=sys.stderr)
        return EXIT_CANNOT_START
    setup_logging(args.log_level or settings.log_level)
    return int(args._main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
