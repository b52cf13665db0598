"""The standalone bot: a small discord.py ``commands.Bot`` that loads the feature extensions.

Intents are the minimum: guilds, guild messages, and message content (privileged) only when automatic alt
text is wanted, because without it Discord delivers guild messages with empty attachments.

:func:`make_bot` picks :class:`CaptionBot` (one unsharded connection) or :class:`ShardedCaptionBot` (discord.py's
``AutoShardedBot`` running this process's shards, from :mod:`captionbot.sharding`). Everything a guild needs lives
in Redis (settings, "answered" marks) and each process reads its own result stream, so processes with different
shards share nothing else; only the process with shard 0 syncs the (global) slash commands.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from captionbot.bot.config import BotConfig
from discord.ext import commands

from captionbot.sharding import ShardPlan

log = logging.getLogger(__name__)
EXTENSIONS = ("captionbot.bot.captions", "captionbot.bot.alttext", "captionbot.bot.stats",
              "captionbot.bot.feedback", "captionbot.bot.find")


def minimal_intents(alt_text: bool = True) -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = True  # channels and roles, to resolve permissions
    intents.guild_messages = True  # MESSAGE_CREATE in guilds, for automatic alt text
    intents.message_content = alt_text  # privileged: attachments of messages that do not mention the bot
    return intents


class CaptionBot(commands.Bot):
    """captionbot as a bot of its own. Other bots can instead ``load_extension("captionbot.bot.captions")`` etc."""

    def __init__(self, config: BotConfig, *, alt_text: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("intents", minimal_intents(alt_text))  # kwargs: discord.Client's own options
        super().__init__(command_prefix=commands.when_mentioned, help_command=None,
                         allowed_mentions=discord.AllowedMentions.none(), **kwargs)
        self.captionbot_config = config

    async def setup_hook(self) -> None:
        for ext in EXTENSIONS:
            await self.load_extension(ext)
        if self.captionbot_config.sync_commands:
            synced = await self.tree.sync()
            log.info("synced %d application command(s)", len(synced))

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands here: a mention is answered by the captions Cog's listener, never parsed as a
        command (which would log ``CommandNotFound`` with a traceback)."""

    async def on_ready(self) -> None:
        log.info("logged in as %s (id %s) in %d guild(s)", self.user, self.user and self.user.id, len(self.guilds))


class ShardedCaptionBot(CaptionBot, commands.AutoShardedBot):
    """captionbot on discord.py's ``AutoShardedBot``: this process's shards of ``plan.count`` (one connection each;
    Discord sends each its guilds, ``(guild_id >> 22) % count``)."""

    def __init__(self, config: BotConfig, plan: ShardPlan, *, alt_text: bool = True, **kwargs: Any) -> None:
        super().__init__(config, alt_text=alt_text, shard_count=plan.count, shard_ids=list(plan.ids), **kwargs)
        self.shard_plan = plan

    async def on_ready(self) -> None:
        log.info("logged in as %s (id %s) with %s, in %d guild(s)", self.user, self.user and self.user.id,
                 self.shard_plan.describe(), len(self.guilds))


def make_bot(config: BotConfig, plan: ShardPlan | None, *, alt_text: bool = True, **kwargs: Any) -> CaptionBot:
    """The bot for this process: unsharded without a plan, else sharded (command sync left to shard 0's process)."""
    if plan is None:
        return CaptionBot(config, alt_text=alt_text, **kwargs)
    if config.sync_commands and not plan.syncs_commands:
        log.info("slash commands are synced by the process with shard 0, not this one (%s)", plan.describe())
        config.sync_commands = False
    return ShardedCaptionBot(config, plan, alt_text=alt_text, **kwargs)
