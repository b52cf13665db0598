"""The bot's own knobs, on top of :class:`captionbot.settings.Settings` (queue, model and size limits).

A host bot that loads these extensions may set ``bot.captionbot_config = BotConfig(...)`` before loading; otherwise
the defaults below apply, with settings read from the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from captionbot.bot.retry import Retry

from captionbot.settings import Settings, load_settings

DISCORD_CDN_ORIGINS = ("https://cdn.discordapp.com", "https://media.discordapp.net")


@dataclass
class BotConfig:
    settings: Settings = field(default_factory=load_settings)
    # Where attachments may be downloaded from (scheme://host[:port]). Discord's CDN only, plus a stand-in's.
    cdn_origins: tuple[str, ...] = DISCORD_CDN_ORIGINS
    download_timeout_s: float = 15.0
    # Rate limits: at most N images per window, per user and per guild (sliding window).
    user_limit: int = 10
    guild_limit: int = 60
    rate_window_s: float = 60.0
    images_per_message: int = 10  # Discord's own maximum attachments per message
    reply_retry: Retry = field(default_factory=Retry)  # replies Discord failed for a passing reason (a 503)
    sync_commands: bool = True  # sync slash commands with Discord at start (global)
