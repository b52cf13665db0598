"""``captionbot feedback export --guild ID --out DIR``: a server's corrections as a captioning dataset that
``captionbot train --coco DIR/captions.json DIR/images`` reads; ``captionbot feedback wipe --guild ID`` forgets them.

Reads the bot's Redis (``CAPTIONBOT_REDIS_URL``): the embedded queue lives inside ``captionbot run`` and cannot be
read from another process.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = sub.add_parser("export", help="write a server's corrections as a captioning dataset (COCO captions)")
    export.add_argument("--guild", required=True, help="the server's id")
    export.add_argument("--out", type=Path, required=True, help="folder to write captions.json and images/ into")
    wipe = sub.add_parser("wipe", help="forget a server's corrections, kept images and votes")
    wipe.add_argument("--guild", required=True, help="the server's id")


def main(args: argparse.Namespace) -> int:
    from captionbot.bot.corrections import valid_id

    from captionbot.process import EXIT_CANNOT_START

    if not valid_id(args.guild):
        print(f"captionbot feedback: --guild must be a server id (digits), not {args.guild[:30]!r}", file=sys.stderr)
        return EXIT_CANNOT_START
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from captionbot.bot.corrections import FeedbackStore
    from captionbot.bot.feedback_export import export_dataset

    from captionbot.process import EXIT_CANNOT_START, EXIT_FAILED
    from captionbot.queue.connection import REDIS_DOWN_ERRORS, connect_redis, describe, is_embedded
    from captionbot.settings import load_settings

    settings = load_settings()
    if settings.redis_url is None or is_embedded(settings):
        print("captionbot feedback: set CAPTIONBOT_REDIS_URL to the bot's Redis (the embedded queue of "
              "`captionbot run` cannot be read from another process)", file=sys.stderr)
        return EXIT_CANNOT_START
    redis = await connect_redis(settings)
    try:
        store = FeedbackStore(redis, settings.redis_keys.jobs)
        if args.action == "export":
            try:
                summary = await export_dataset(store, args.guild, args.out)
            except OSError as exc:
                print(f"captionbot feedback export: cannot write to {args.out}: {exc}", file=sys.stderr)
                return EXIT_FAILED
            print(summary.describe(args.out))
        else:
            n = await store.wipe(args.guild)
            print(f"Forgot {n} correction(s) of guild {args.guild}, their images and the votes.")
        return 0
    except REDIS_DOWN_ERRORS as exc:
        print(f"captionbot feedback: Redis at {describe(settings)} is not reachable ({type(exc).__name__})",
              file=sys.stderr)
        return EXIT_FAILED
    finally:
        await redis.aclose()
