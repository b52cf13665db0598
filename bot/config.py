"""The bot's own knobs, on top of :class:`captionbot.settings.Settings` (CDN origins, download timeout, rate
limits, size limits: all settings from the environment).

A host bot that loads these extensions may set ``bot.captionbot_config = BotConfig(...)`` before loading; otherwise
the defaults below apply, with settings read from the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from captionbot.bot.retry import Retry

from captionbot.settings import DISCORD_CDN_ORIGINS, Settings, load_settings

__all__ = ["DISCORD_CDN_ORIGINS", "BotConfig"]


@dataclass
class BotConfig:
    settings: Settings = field(default_factory=load_settings)
    extra_cdn_origins: tuple[str, ...] = ()  # allowed besides ``settings.cdn_origins``: a stand-in's own origin
    images_per_message: int = 10  # Discord's own maximum attachments per message
    reply_retry: Retry = field(default_factory=Retry)  # replies Discord failed for a passing reason (a 503)
    sync_commands: bool = True  # sync slash commands with Discord at start (global)
    max_corrections: int = 500  # corrections kept per server (feedback.py); the oldest go first

    @property
    def cdn_origins(self) -> tuple[str, ...]:
        """Where attachments may be downloaded from (scheme://host[:port])."""
        return (*self.settings.cdn_origins, *self.extra_cdn_origins)

    @property
    def download_timeout_s(self) -> float:
        return self.settings.download_timeout_s
