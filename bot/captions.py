"""Captions: ``/caption``, the "Describe image" message command, and automatic alt text in channels that want it.

Every path runs the same steps per image (``docs/contracts.md``, a job's life): metadata check, download from the CDN
(capped, timed), header and integrity check, then the queue. Interactions are deferred before any of the slow
steps (Discord allows 3 s for the first response); refusals found before that go straight to the asker,
privately. Automatic alt text answers each message once (a Redis mark per message id), never answers bots or
webhooks, and stays quiet when rate-limited rather than adding noise to the channel.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from captionbot.bot import services as services_mod
from captionbot.bot.image_check import check_metadata, probe_image
from captionbot.bot.image_fetch import download
from captionbot.bot.replies import Outcome, answer, answer_privately, caption_text, defer, heatmap_files, reply_to
from captionbot.bot.services import Services
from discord import app_commands
from discord.ext import commands

from captionbot.formats import (
    DEFAULT_BEAM_SIZE,
    IMAGE_EXTENSIONS,
    MAX_BEAM_SIZE,
    MIN_BEAM_SIZE,
    USER_MESSAGES,
    ErrorCode,
    ImageRejected,
)

log = logging.getLogger(__name__)
HANDLED_TTL_S = 24 * 3600


def looks_like_image(att: discord.Attachment) -> bool:
    if att.content_type:
        return att.content_type.startswith("image/")
    return att.filename.lower().endswith(IMAGE_EXTENSIONS)


class Captions(commands.Cog):
    """Turns images into alt-text-style descriptions."""

    def __init__(self, bot: commands.Bot, services: Services) -> None:
        self.bot = bot
        self.s = services
        self.describe_menu = app_commands.ContextMenu(name="Describe image", callback=self.describe_image)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.describe_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.describe_menu.name, type=self.describe_menu.type)

    # -- the shared steps ------------------------------------------------------------------------------------

    async def caption_one(self, att: discord.Attachment, *, heatmap: bool, beam: int | None,
                          context: dict[str, Any]) -> Outcome:
        """Check, download, probe and caption one attachment. Never raises: refusals become an Outcome."""
        settings = self.s.config.settings
        try:
            check_metadata(att.content_type, att.size, settings.max_image_bytes, att.filename)
            data = await download(self.s.http, att.url, allowed_origins=self.s.config.cdn_origins,
                                  max_bytes=settings.max_image_bytes, timeout_s=self.s.config.download_timeout_s)
            await asyncio.to_thread(probe_image, data, settings.max_pixels)
            result = await self.s.client.caption(data, beam_size=beam or settings.beam_size, heatmap=heatmap,
                                                 context=context)
        except ImageRejected as exc:
            log.info("image %s refused: %s", att.filename, exc)
            return Outcome(att.filename, error=exc.code)
        except Exception:
            log.exception("captioning %s failed", att.filename)
            return Outcome(att.filename, error=ErrorCode.INTERNAL)
        if not result.ok:
            log.info("image %s not captioned: %s %s", att.filename, result.error, result.detail)
        return Outcome(att.filename, result=result)

    async def caption_all(self, atts: list[discord.Attachment], *, heatmap: bool, beam: int | None,
                          context: dict[str, Any]) -> list[Outcome]:
        return list(await asyncio.gather(*(
            self.caption_one(a, heatmap=heatmap, beam=beam, context={**context, "attachment_id": str(a.id)})
            for a in atts)))

    def _allowed(self, user_id: int, guild_id: int | None, n: int) -> bool:
        ok = self.s.limits.try_take(user_id, guild_id, n)
        if not ok:
            log.info("rate limit: user %s in guild %s asked for %d image(s)", user_id, guild_id, n)
        return ok

    @staticmethod
    def _context(interaction: discord.Interaction, kind: str) -> dict[str, Any]:
        return {"kind": kind, "interaction_id": str(interaction.id), "guild_id": str(interaction.guild_id or ""),
                "channel_id": str(interaction.channel_id or ""), "user_id": str(interaction.user.id)}

    # -- /caption --------------------------------------------------------------------------------------------

    @app_commands.command(name="caption", description="Describe an image in words, as alt text")
    @app_commands.describe(image="The image to describe",
                           heatmap="Also show where the model looked (default: this channel's setting)",
                           beam=f"Beam width: wider searches more captions ({MIN_BEAM_SIZE}-{MAX_BEAM_SIZE}, "
                                f"default {DEFAULT_BEAM_SIZE})")
    async def caption(self, interaction: discord.Interaction, image: discord.Attachment, heatmap: bool | None = None,
                      beam: app_commands.Range[int, MIN_BEAM_SIZE, MAX_BEAM_SIZE] | None = None) -> None:
        try:
            check_metadata(image.content_type, image.size, self.s.config.settings.max_image_bytes, image.filename)
        except ImageRejected as exc:
            log.info("/caption refused %s: %s", image.filename, exc)
            return await answer_privately(interaction, exc.user_message)
        if not self._allowed(interaction.user.id, interaction.guild_id, 1):
            return await answer_privately(interaction, USER_MESSAGES[ErrorCode.RATE_LIMITED])
        if not await defer(interaction):
            return
        if heatmap is None:
            heatmap = await self._channel_wants_heatmap(interaction)
        [outcome] = await self.caption_all([image], heatmap=heatmap, beam=beam,
                                           context=self._context(interaction, "slash"))
        if outcome.ok:
            await answer(interaction, caption_text([outcome]), heatmap_files([outcome]))
        else:
            await answer_privately(interaction, outcome.text)

    async def _channel_wants_heatmap(self, interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None or interaction.channel_id is None:
            return False
        return (await self.s.store.effective(interaction.guild_id, interaction.channel_id)).heatmap

    # -- "Describe image" (message context menu) -------------------------------------------------------------

    async def describe_image(self, interaction: discord.Interaction, message: discord.Message) -> None:
        images = [a for a in message.attachments if looks_like_image(a)][: self.s.config.images_per_message]
        if not images:
            return await answer_privately(interaction, "That message has no images I can describe.")
        if not self._allowed(interaction.user.id, interaction.guild_id, len(images)):
            return await answer_privately(interaction, USER_MESSAGES[ErrorCode.RATE_LIMITED])
        if not await defer(interaction):
            return
        outcomes = await self.caption_all(images, heatmap=False, beam=None,
                                          context={**self._context(interaction, "menu"), "message_id": str(message.id)})
        if any(o.ok for o in outcomes):
            await answer(interaction, caption_text(outcomes))
        else:
            await answer_privately(interaction, caption_text(outcomes))

    async def cog_app_command_error(self, interaction: discord.Interaction,
                                    error: app_commands.AppCommandError) -> None:
        log.error("%s failed", interaction.command and interaction.command.name, exc_info=error)
        await answer_privately(interaction, USER_MESSAGES[ErrorCode.INTERNAL])

    # -- automatic alt text ----------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.webhook_id or message.guild is None or not message.attachments:
            return
        images = [a for a in message.attachments if looks_like_image(a)]
        if not images:
            return
        wanted = await self.s.store.effective(message.guild.id, message.channel.id)
        if not wanted.enabled:
            return
        if not wanted.all_images:
            images = [a for a in images if not a.description]
        images = images[: self.s.config.images_per_message]
        if not images or not await self._first_time(message.id):
            return
        if not self._allowed(message.author.id, message.guild.id, len(images)):
            return
        context = {"kind": "alttext", "guild_id": str(message.guild.id), "channel_id": str(message.channel.id),
                   "message_id": str(message.id)}
        outcomes = await self.caption_all(images, heatmap=wanted.heatmap, beam=None, context=context)
        if wanted.skip_uncertain:
            outcomes = self._without_uncertain(outcomes, message)
            if not outcomes:
                return
        await reply_to(message, caption_text(outcomes), heatmap_files(outcomes))

    @staticmethod
    def _without_uncertain(outcomes: list[Outcome], message: discord.Message) -> list[Outcome]:
        """The channel posts only descriptions the model is sure of: drop the others, with a log line each."""
        kept = []
        for o in outcomes:
            if o.result is not None and o.result.uncertain:
                log.info("alt text for message %s (%s) not posted: confidence %.2f is below the channel's bar",
                         message.id, o.filename, o.result.confidence)
            else:
                kept.append(o)
        return kept

    async def _first_time(self, message_id: int) -> bool:
        """True once per message id across reconnects, restarts and bot processes (a Redis mark with a TTL)."""
        return bool(await self.s.redis.set(self.s.keys.handled(message_id), b"1", nx=True, ex=HANDLED_TTL_S))


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Captions(bot, await services_mod.acquire(bot, __name__)))


async def teardown(bot: commands.Bot) -> None:
    await services_mod.release(bot, __name__)
