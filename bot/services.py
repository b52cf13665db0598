"""What the feature Cogs share in one bot: settings, the Redis connection, the caption client, the settings
store, rate limits and an HTTP session for CDN downloads.

Created by the first captionbot extension a bot loads and closed when the last one is unloaded, so the
extensions work alone or together in any discord.py 2.x bot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
from captionbot.bot.channel_settings import SettingsStore
from captionbot.bot.config import BotConfig
from captionbot.bot.rate_limit import CaptionRateLimits
from captionbot.bot.repost import Reposter
from discord.ext import commands
from redis.asyncio import Redis

from captionbot.formats import RedisKeys

if TYPE_CHECKING:
    from captionbot.queue.client import CaptionClient

log = logging.getLogger(__name__)
ATTR = "captionbot_services"


@dataclass
class Services:
    config: BotConfig
    redis: Redis
    keys: RedisKeys
    client: CaptionClient
    store: SettingsStore
    limits: CaptionRateLimits
    http: aiohttp.ClientSession
    reposter: Reposter  # repost mode's webhooks (bot/repost.py)
    users: set[str] = field(default_factory=set)  # extensions using these services

    @classmethod
    async def create(cls, config: BotConfig) -> Services:
        from captionbot.queue.client import CaptionClient
        from captionbot.queue.connection import REDIS_DOWN_ERRORS, connect_redis, describe

        redis = await connect_redis(config.settings)
        client = await CaptionClient.connect(config.settings, redis=redis)
        keys = config.settings.redis_keys
        store = SettingsStore(redis, keys)
        try:
            await store.migrate_legacy()
        except REDIS_DOWN_ERRORS as exc:  # the bot starts while Redis is down; the old keys wait for the next start
            log.warning("could not look for settings in the old key layout (%s)", type(exc).__name__)
        log.info("captionbot services ready (queue: %s)", describe(config.settings))
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=config.download_timeout_s))
        return cls(config=config, redis=redis, keys=keys, client=client, store=store,
                   limits=CaptionRateLimits.from_settings(config.settings), http=http,
                   reposter=Reposter(http, config.cdn_origins, config.download_timeout_s, config.reply_retry))

    async def close(self) -> None:
        await self.client.close()
        await self.http.close()
        await self.redis.aclose()


async def acquire(bot: commands.Bot, extension: str) -> Services:
    """The bot's services, created on first use (from ``bot.captionbot_config`` if the host bot set one)."""
    services: Services | None = getattr(bot, ATTR, None)
    if services is None:
        config = getattr(bot, "captionbot_config", None) or BotConfig()
        services = await Services.create(config)
        setattr(bot, ATTR, services)
    services.users.add(extension)
    return services


async def release(bot: commands.Bot, extension: str) -> None:
    services: Services | None = getattr(bot, ATTR, None)
    if services is None:
        return
    services.users.discard(extension)
    if not services.users:
        setattr(bot, ATTR, None)
        await services.close()
