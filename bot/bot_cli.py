"""``captionbot bot``: the Discord bot alone; workers run elsewhere on the same Redis (``CAPTIONBOT_REDIS_URL``).

The token comes from ``DISCORD_TOKEN`` (never from the command line, so it stays out of shell history and process
lists). ``--standin URL`` connects to a ``captionbot standin`` instead of Discord. Shards come from settings
(``CAPTIONBOT_SHARD_COUNT`` and this process's ids: :mod:`captionbot.sharding`), checked before connecting.
With ``CAPTIONBOT_METRICS_PORT`` set it serves ``/healthz``, ``/readyz`` (ready = logged in and connected to the
gateway: every shard of this process) and ``/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from captionbot.settings import Settings

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--standin", metavar="URL", default=None,
                        help="use a local Discord stand-in at URL (e.g. http://127.0.0.1:8765) instead of Discord")
    parser.add_argument("--no-alt-text", action="store_true",
                        help="no automatic alt text: do not ask for the privileged message-content intent")
    parser.add_argument("--no-sync", action="store_true", help="do not sync slash commands at start")


def main(args: argparse.Namespace) -> int:
    from captionbot.process import run_service
    from captionbot.settings import load_settings

    settings = load_settings()
    return run_service("bot", lambda stop: run(settings, stop, args.standin, alt_text=not args.no_alt_text,
                                               sync=not args.no_sync))


async def run(settings: Settings, stop: asyncio.Event, standin_url: str | None, *, alt_text: bool,
              sync: bool) -> int:
    """Connect the bot (to Discord, or to a stand-in at ``standin_url``) and run it until ``stop``."""
    from captionbot.bot.config import BotConfig
    from captionbot.bot.runner import make_bot
    from captionbot.bot.standin import point_discord_at
    from captionbot.bot.standin.server import DEFAULT_TOKEN

    from captionbot.process import StartupError, health_endpoints, until_stopped
    from captionbot.queue.connection import is_embedded
    from captionbot.sharding import ShardSettingsError, plan

    try:
        shards = plan(settings)
    except ShardSettingsError as exc:
        raise StartupError(str(exc)) from None
    if settings.discord_token is None and not standin_url:
        raise StartupError("no DISCORD_TOKEN in the environment (or use --standin URL for a local stand-in)")
    if is_embedded(settings):
        log.warning("no CAPTIONBOT_REDIS_URL: the queue is in this process and no worker will see it "
                    "(use `captionbot run` for bot and worker together)")
    config = BotConfig(settings=settings, sync_commands=sync)
    if standin_url:
        point_discord_at(standin_url)
        config.extra_cdn_origins = (standin_url.rstrip("/"),)
        token = DEFAULT_TOKEN
    else:
        assert settings.discord_token is not None
        token = settings.discord_token.get_secret_value()
    bot = make_bot(config, shards, alt_text=alt_text)
    with health_endpoints(settings.metrics_port, lambda: bot.is_ready() and not bot.is_closed()):
        failed = await until_stopped(stop, asyncio.create_task(bot.start(token), name="bot"))
        await bot.close()
    return 1 if failed else 0
