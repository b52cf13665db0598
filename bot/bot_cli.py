"""``captionbot bot``: the Discord bot alone; workers run elsewhere on the same Redis (``CAPTIONBOT_REDIS_URL``).

The token comes from ``DISCORD_TOKEN`` (never from the command line, so it stays out of shell history and process
lists). ``--standin URL`` connects to a ``captionbot standin`` instead of Discord. With ``CAPTIONBOT_METRICS_PORT``
set it serves ``/healthz``, ``/readyz`` (ready = logged in and connected to the gateway) and ``/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--standin", metavar="URL", default=None,
                        help="use a local Discord stand-in at URL (e.g. http://127.0.0.1:8765) instead of Discord")
    parser.add_argument("--no-alt-text", action="store_true",
                        help="no automatic alt text: do not ask for the privileged message-content intent")
    parser.add_argument("--no-sync", action="store_true", help="do not sync slash commands at start")


def main(args: argparse.Namespace) -> int:
    from captionbot.settings import load_settings

    settings = load_settings()
    if settings.discord_token is None and not args.standin:
        log.error("no DISCORD_TOKEN in the environment (or use --standin URL for a local stand-in)")
        return 2
    if settings.redis_url is None:
        log.warning("no CAPTIONBOT_REDIS_URL: the queue is in this process and no worker will see it "
                    "(use `captionbot run` for bot and worker together)")
    return asyncio.run(run(settings, args.standin, alt_text=not args.no_alt_text, sync=not args.no_sync))


async def run(settings: object, standin_url: str | None, *, alt_text: bool, sync: bool) -> int:
    from captionbot.bot.config import DISCORD_CDN_ORIGINS, BotConfig
    from captionbot.bot.runner import CaptionBot
    from captionbot.bot.standin import point_discord_at
    from captionbot.bot.standin.server import DEFAULT_TOKEN

    config = BotConfig(settings=settings, sync_commands=sync)  # type: ignore[arg-type]
    if standin_url:
        point_discord_at(standin_url)
        config.cdn_origins = (*DISCORD_CDN_ORIGINS, standin_url.rstrip("/"))
        token = DEFAULT_TOKEN
    else:
        token = config.settings.discord_token.get_secret_value()  # type: ignore[union-attr]
    bot = CaptionBot(config, alt_text=alt_text)
    health = None
    if config.settings.metrics_port:
        from captionbot.queue.health import HealthServer

        health = HealthServer(config.settings.metrics_port, lambda: bot.is_ready() and not bot.is_closed())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bot_task = asyncio.create_task(bot.start(token))
    await asyncio.wait([bot_task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    await bot.close()
    if health is not None:
        health.close()
    if bot_task.done() and bot_task.exception() is not None:
        log.error("the bot stopped: %s", bot_task.exception())
        return 1
    return 0
