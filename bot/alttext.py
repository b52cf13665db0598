"""``/alttext on|off|status [channel]``: who may switch automatic alt text, and where.

Changing it for the whole server needs Manage Server; for one channel, Manage Channels in that channel (Manage
Server also does). Anyone may ask for the status. Others get a polite, private refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import discord
from captionbot.bot import services as services_mod
from captionbot.bot.channel_settings import AltTextSettings
from captionbot.bot.replies import NO_MENTIONS, answer_privately, defer
from captionbot.bot.services import Services
from discord import app_commands
from discord.ext import commands

log = logging.getLogger(__name__)
T = TypeVar("T")


class MissingSettingsPermission(app_commands.CheckFailure):
    """The member may not change alt-text settings here; the message says which permission it takes."""


def can_change_alttext() -> Callable[[T], T]:
    """Manage Server, or Manage Channels in the ``channel`` option's channel when one is given."""

    def predicate(interaction: discord.Interaction) -> bool:
        if interaction.permissions.manage_guild:
            return True
        channel = getattr(interaction.namespace, "channel", None)
        if channel is None:
            raise MissingSettingsPermission(
                "Sorry, turning alt text on or off for the whole server needs the **Manage Server** permission. "
                "Members with **Manage Channels** can change it for one channel with the `channel` option.")
        if channel.permissions.manage_channels:  # the asker's permissions in that channel, resolved by Discord
            return True
        raise MissingSettingsPermission(
            f"Sorry, changing alt text for <#{channel.id}> needs the **Manage Channels** permission there.")

    return app_commands.check(predicate)


def describe(settings: AltTextSettings, where: str) -> str:
    state = "on" if settings.enabled else "off"
    source = {"channel": "set for this channel", "server": "set for the server", "default": "the default"}
    images = "all images" if settings.all_images else "only images without alt text"
    heatmap = "with" if settings.heatmap else "without"
    uncertain = ("descriptions the model is unsure of are not posted" if settings.skip_uncertain
                 else "descriptions the model is unsure of are posted, marked \"Possibly\"")
    return (f"Automatic alt text in {where} is **{state}** ({source[settings.source]}): {images}, {heatmap} heatmaps; "
            f"{uncertain}.")


@app_commands.guild_only()
class AltText(commands.GroupCog, group_name="alttext", group_description="Automatic alt text for posted images"):
    def __init__(self, bot: commands.Bot, services: Services) -> None:
        self.bot = bot
        self.s = services
        super().__init__()

    @app_commands.command(name="on", description="Reply to images posted without alt text with a description")
    @app_commands.describe(channel="Only this channel (default: the whole server)",
                           all_images="Describe every image, even those that have alt text",
                           heatmap="Attach the attention heatmap to each reply",
                           skip_uncertain="Post nothing when the model is unsure (default: post it, marked "
                                          "\"Possibly\")")
    @can_change_alttext()
    async def turn_on(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None,
                      all_images: bool = False, heatmap: bool = False, skip_uncertain: bool = False) -> None:
        await self._set(interaction, channel, enabled=True, all_images=all_images, heatmap=heatmap,
                        skip_uncertain=skip_uncertain)

    @app_commands.command(name="off", description="Stop describing posted images")
    @app_commands.describe(channel="Only this channel (default: the whole server)")
    @can_change_alttext()
    async def turn_off(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> None:
        await self._set(interaction, channel, enabled=False)

    @app_commands.command(name="status", description="Is automatic alt text on here?")
    @app_commands.describe(channel="The channel to ask about (default: this one)")
    async def status(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> None:
        if not await defer(interaction, ephemeral=True):
            return
        assert interaction.guild_id is not None  # guild_only
        channel_id = channel.id if channel else interaction.channel_id or 0
        settings = await self.s.store.effective(interaction.guild_id, channel_id)
        await interaction.followup.send(describe(settings, f"<#{channel_id}>"), ephemeral=True,
                                        allowed_mentions=NO_MENTIONS)

    async def _set(self, interaction: discord.Interaction, channel: discord.TextChannel | None,
                   **fields: bool) -> None:
        if not await defer(interaction, ephemeral=True):
            return
        assert interaction.guild_id is not None  # guild_only
        if channel is None:
            await self.s.store.set_server(interaction.guild_id, **fields)
            where = "this server"
        else:
            await self.s.store.set_channel(interaction.guild_id, channel.id, **fields)
            where = f"<#{channel.id}>"
        log.info("alt text %s in %s (guild %s) by user %s", "on" if fields["enabled"] else "off", where,
                 interaction.guild_id, interaction.user.id)
        settings = await self.s.store.effective(interaction.guild_id, channel.id if channel else
                                                interaction.channel_id or 0)
        await interaction.followup.send(f"Done. {describe(settings, where)}", ephemeral=True,
                                        allowed_mentions=NO_MENTIONS)

    async def cog_app_command_error(self, interaction: discord.Interaction,
                                    error: app_commands.AppCommandError) -> None:
        if isinstance(error, MissingSettingsPermission):
            log.info("alt-text change refused for user %s in guild %s", interaction.user.id, interaction.guild_id)
            await answer_privately(interaction, str(error))
        else:
            log.error("/alttext failed", exc_info=error)
            await answer_privately(interaction, "Sorry, something went wrong changing the settings.")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(AltText(bot, await services_mod.acquire(bot, __name__)))


async def teardown(bot: commands.Bot) -> None:
    await services_mod.release(bot, __name__)
