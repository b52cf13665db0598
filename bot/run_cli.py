"""``captionbot run``: the bot, a caption worker and the queue in one process: the embedded default.

With no ``DISCORD_TOKEN`` it also starts the local Discord stand-in on ``settings.standin_port`` and points
discord.py at it by configuration (``Route.BASE``, ``DEFAULT_GATEWAY``); open the printed URL, post an image into
#alt-text (automatic alt text is switched on there for the demo) or use "/caption", and watch the replies. With a
token it connects to Discord itself. The queue is Redis when ``CAPTIONBOT_REDIS_URL`` is set, else in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from captionbot.bot.standin import StandIn

    from captionbot.settings import Settings

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=None, help="stand-in port (default: $CAPTIONBOT_STANDIN_PORT)")
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: $CAPTIONBOT_BUNDLE)")
    parser.add_argument("--test-model", choices=("null",), default=None, help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    from captionbot.process import run_service
    from captionbot.settings import load_settings

    overrides: dict[str, object] = {"bundle": args.bundle} if args.bundle else {}
    if args.port is not None:
        overrides["standin_port"] = args.port
    settings = load_settings(**overrides)
    return run_service("run", lambda stop: run(settings, stop, args.test_model))


async def run(settings: Settings, stop: asyncio.Event, test_model: str | None = None) -> int:
    """Load the model, start the stand-in (without a token), a worker and the bot; stop them all on ``stop``."""
    from captionbot.bot.config import BotConfig
    from captionbot.bot.runner import CaptionBot
    from captionbot.inference.worker_cli import load_captioner

    from captionbot.process import health_endpoints, until_stopped
    from captionbot.queue.worker import Worker

    if settings.shard_count is not None:
        log.warning("`captionbot run` is one unsharded bot: CAPTIONBOT_SHARD_* settings apply to `captionbot bot`")
    if settings.worker_processes > 1:
        log.warning("`captionbot run` has one worker in its own process: CAPTIONBOT_WORKER_PROCESSES applies to "
                    "`captionbot worker`")
    captioner = load_captioner(settings, test_model)
    standin = None
    config = BotConfig(settings=settings)
    if settings.discord_token is None:
        standin = await _start_standin(settings)
        config.extra_cdn_origins = (standin.base_url,)
        token = standin.token
    else:
        token = settings.discord_token.get_secret_value()

    worker = Worker(settings, captioner)
    worker_task = asyncio.create_task(worker.serve(stop), name="worker")
    bot = CaptionBot(config)
    with health_endpoints(settings.metrics_port,
                          lambda: bot.is_ready() and not bot.is_closed() and worker.ready):
        bot_task = asyncio.create_task(bot.start(token), name="bot")
        if standin is not None:
            await asyncio.wait([asyncio.create_task(standin.gateway.ready.wait()), bot_task],
                               return_when=asyncio.FIRST_COMPLETED)
            print(f"\ncaptionbot is running against a local Discord stand-in: open {standin.base_url}/ "
                  "and post an image into #alt-text (Ctrl-C stops)\n", flush=True)
        failed = await until_stopped(stop, bot_task, worker_task)
        await bot.close()
        await asyncio.gather(worker_task, return_exceptions=True)
    if standin is not None:
        await standin.stop()
    return 1 if failed else 0


async def _start_standin(settings: Settings) -> StandIn:
    """The local Discord stand-in, with discord.py pointed at it and alt text on in #alt-text (with heatmaps)."""
    from captionbot.bot.channel_settings import SettingsStore
    from captionbot.bot.standin import StandIn, point_discord_at

    from captionbot.queue.connection import connect_redis

    standin = StandIn(port=settings.standin_port)
    await standin.start()
    point_discord_at(standin.base_url)
    redis = await connect_redis(settings)
    await SettingsStore(redis, settings.redis_keys).set_channel(
        int(standin.world.guild_id), int(standin.world.channel("alt-text").id), enabled=True, heatmap=True)
    await redis.aclose()
    return standin
