"""``/alttext on|off|status [channel]``: who may switch automatic alt text, and where; ``/alttext optout|optin``:
anyone, for the images they post themselves.

Changing it for the whole server needs Manage Server; for one channel, Manage Channels in that channel (Manage
Server also does). Anyone may ask for the status. Others get a polite, private refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import discord
from captionbot.bot import services as services_mod
from captionbot.bot.channel_settings import DEFAULT_LENGTH, DEFAULT_MODE, AltTextSettings
from captionbot.bot.replies import NO_MENTIONS, answer_privately, defer
from captionbot.bot.repost import missing_permissions
from captionbot.bot.services import Services
from captionbot.bot.spoken_replies import speech_problem
from discord import app_commands
from discord.ext import commands

log = logging.getLogger(__name__)
T = TypeVar("T")

LENGTH_NAMES = {"short": "short (a few words)", "model": "as the model writes them",
                "text": "with any text read in the image"}
MODE_NAMES = {"reply": "as a reply under the image",
              "repost": "on the image itself (reposted under the author's name, as its alt text)"}
REPOST_PER_CHANNEL = (" Repost mode is chosen per channel (add the `channel` option), so descriptions here are "
                      "posted as replies.")
OPTED_OUT = ("Done. Automatic alt text will leave the images you post in this server alone. You can still ask "
             "for a description yourself (`/caption`, **Apps → Describe image**), and `/alttext optin` undoes this.")
NO_CONTENT_INTENT = (
    "Automatic alt text can't work here: this bot runs without the **Message Content** intent, so Discord hides "
    "the images people post from it. Nothing changed. Whoever runs the bot can turn that intent on (and start it "
    "without `--no-alt-text`); meanwhile anyone can use `/caption` or **Apps → Describe image**.")


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
    mode = MODE_NAMES.get(settings.mode, settings.mode)
    spoken = ", also spoken (an audio file)" if settings.voice else ""
    return (f"Automatic alt text in {where} is **{state}** ({source[settings.source]}): {images}, {heatmap} heatmaps, "
            f"descriptions {LENGTH_NAMES.get(settings.length, settings.length)}{spoken}, posted {mode}; {uncertain}.")


def repost_refusal(interaction: discord.Interaction, channel_id: int) -> str | None:
    """Why the bot cannot use repost mode in that channel (the permissions it lacks there), or None."""
    guild = interaction.guild
    target = guild.get_channel(channel_id) if guild else None
    if guild is None or not isinstance(target, discord.TextChannel):
        return f" I can't repost images in <#{channel_id}>, so descriptions there are posted as replies."
    missing = missing_permissions(target, guild.me)
    if not missing:
        return None
    need = " and ".join(f"**{m}**" for m in missing)
    return (f" Repost mode needs {need} for me in <#{channel_id}>, which I don't have, so descriptions there are "
            f"posted as replies. Give me {'them' if len(missing) > 1 else 'it'} and run this again.")


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
                                          "\"Possibly\")",
                           length="How much a description says (default: with text read in the image)",
                           mode="Reply under the image (default), or repost it with the description as its alt text "
                                "(one channel; needs Manage Webhooks and Manage Messages)",
                           voice="Also attach each description spoken, as an audio file Discord plays")
    @app_commands.choices(length=[app_commands.Choice(name=name, value=value) for value, name in LENGTH_NAMES.items()],
                          mode=[app_commands.Choice(name=name, value=name) for name in MODE_NAMES])
    @can_change_alttext()
    async def turn_on(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None,
                      all_images: bool = False, heatmap: bool = False, skip_uncertain: bool = False,
                      length: app_commands.Choice[str] | None = None,
                      mode: app_commands.Choice[str] | None = None, voice: bool = False) -> None:
        await self._set(interaction, channel, enabled=True, all_images=all_images, heatmap=heatmap,
                        skip_uncertain=skip_uncertain, length=length.value if length else DEFAULT_LENGTH,
                        mode=mode.value if mode else DEFAULT_MODE, voice=voice)

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
        text = describe(settings, f"<#{channel_id}>")
        if not self.bot.intents.message_content:
            text += " This bot runs without the **Message Content** intent, so it cannot see posted images."
        await interaction.followup.send(text, ephemeral=True,
                                        allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="optout", description="Do not describe the images I post (this server)")
    async def opt_out(self, interaction: discord.Interaction) -> None:
        await self._opt(interaction, opted_out=True)

    @app_commands.command(name="optin", description="Describe the images I post again (this server)")
    async def opt_in(self, interaction: discord.Interaction) -> None:
        await self._opt(interaction, opted_out=False)

    async def _opt(self, interaction: discord.Interaction, *, opted_out: bool) -> None:
        if not await defer(interaction, ephemeral=True):
            return
        assert interaction.guild_id is not None  # guild_only
        await self.s.store.set_opted_out(interaction.guild_id, interaction.user.id, opted_out)
        log.info("user %s opted %s of automatic alt text in guild %s", interaction.user.id,
                 "out" if opted_out else "in", interaction.guild_id)
        text = (OPTED_OUT if opted_out else
                "Done. Automatic alt text will describe the images you post here again, where it is on.")
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def _set(self, interaction: discord.Interaction, channel: discord.TextChannel | None,
                   **fields: bool | str) -> None:
        if not await defer(interaction, ephemeral=True):
            return
        assert interaction.guild_id is not None  # guild_only
        if fields["enabled"] and not self.bot.intents.message_content:
            log.info("alt text on refused in guild %s: no message-content intent", interaction.guild_id)
            await interaction.followup.send(NO_CONTENT_INTENT, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        note = ""
        if fields.get("mode") == "repost":  # needs one channel and the bot's permissions there; else reply mode
            note = REPOST_PER_CHANNEL if channel is None else repost_refusal(interaction, channel.id) or ""
            if note:
                fields["mode"] = "reply"
                log.info("repost mode refused in guild %s (channel %s): %s", interaction.guild_id,
                         channel.id if channel else "-", note.strip())
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
        text = f"Done. {describe(settings, where)}{note}"
        if fields.get("voice") and (problem := speech_problem()) is not None:
            log.warning("spoken alt text switched on in guild %s, but speech cannot be made here: %s",
                        interaction.guild_id, problem)
            text += (" Spoken descriptions are not available on this bot's host right now, so replies will carry "
                     "text only until whoever runs it installs `espeak-ng`.")
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

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
