"""Captions: ``/caption``, the "Describe image" message command, and automatic alt text in channels that want it.

Every path runs the same steps per image (``docs/contracts.md``, a job's life): metadata check, download from the CDN
(capped, timed), header and integrity check, then the queue. Interactions are deferred before any of the slow
steps (Discord allows 3 s for the first response); refusals found before that go straight to the asker,
privately. Automatic alt text answers each message once (a Redis claim per message id, made a 24 h mark once the
reply is out), never answers bots or webhooks, and stays quiet when rate-limited rather than adding noise to the
channel.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from captionbot.bot import services as services_mod
from captionbot.bot.corrections import DescribedImage, Description
from captionbot.bot.feedback import buttons_to_send, store_for
from captionbot.bot.find import index_description
from captionbot.bot.find_index import FindIndex
from captionbot.bot.image_check import check_metadata
from captionbot.bot.image_fetch import download
from captionbot.bot.image_hash import perceptual_hash
from captionbot.bot.image_shrink import prepare_for_queue
from captionbot.bot.replies import (
    Outcome,
    answer,
    answer_privately,
    caption_text,
    defer,
    heatmap_files,
    reply_to,
    said_of,
)
from captionbot.bot.repost import Result, alt_texts
from captionbot.bot.services import Services
from captionbot.bot.spoken_replies import UNAVAILABLE_NOTE, spoken_file
from captionbot.bot.variant_text import variants_text
from discord import app_commands
from discord.ext import commands

from captionbot.formats import (
    DEFAULT_BEAM_SIZE,
    IMAGE_EXTENSIONS,
    MAX_BEAM_SIZE,
    MAX_VARIANTS,
    MIN_BEAM_SIZE,
    MIN_VARIANTS,
    USER_MESSAGES,
    CaptionResult,
    ErrorCode,
    ImageRejected,
    Priority,
)

log = logging.getLogger(__name__)
HANDLED_TTL_S = 24 * 3600
REPLY_MAP_TTL_S = 7 * 24 * 3600  # a description is deleted with its message for a week after it was posted
CLAIM_SLACK_S = 30  # a claim outlives the longest answer (queue timeout + downloads + sends) by this much
MENTION_HELP = ("I describe images in words, as alt text. Reply to a message with images and mention me, use "
                "`/caption`, or pick **Apps → Describe image** on a message. `/help` lists everything.")


def looks_like_image(att: discord.Attachment) -> bool:
    if att.content_type:
        return att.content_type.startswith("image/")
    return att.filename.lower().endswith(IMAGE_EXTENSIONS)


class Captions(commands.Cog):
    """Turns images into alt-text-style descriptions."""

    def __init__(self, bot: commands.Bot, services: Services) -> None:
        self.bot = bot
        self.s = services
        self.feedback = store_for(services)
        self.describe_menu = app_commands.ContextMenu(name="Describe image", callback=self.describe_image)
        self.find_index = FindIndex(services.redis, services.keys)  # what the bot posts is found by /find

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.describe_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.describe_menu.name, type=self.describe_menu.type)

    # -- the shared steps ------------------------------------------------------------------------------------

    async def caption_one(self, att: discord.Attachment, *, heatmap: bool, beam: int | None,
                          context: dict[str, Any], priority: Priority = Priority.HIGH, variants: int = 1) -> Outcome:
        """Check, download, probe and caption one attachment (in the queue's ``priority`` lane). Never raises:
        refusals become an Outcome."""
        settings = self.s.config.settings
        try:
            check_metadata(att.content_type, att.size, settings.max_image_bytes, att.filename)
            data = await download(self.s.http, att.url, allowed_origins=self.s.config.cdn_origins,
                                  max_bytes=settings.max_image_bytes, timeout_s=self.s.config.download_timeout_s)
            data = await asyncio.to_thread(prepare_for_queue, data, settings.max_pixels)
            image_hash = await self._hash(data, att.filename)
            if image_hash and (fixed := await self._corrected(att, image_hash, context)):
                return fixed
            result = await self.s.client.caption(data, beam_size=beam or settings.beam_size, heatmap=heatmap,
                                                 context=context, priority=priority, variants=variants)
        except ImageRejected as exc:
            log.info("image %s refused: %s", att.filename, exc)
            return Outcome(att.filename, error=exc.code)
        except Exception:
            log.exception("captioning %s failed", att.filename)
            return Outcome(att.filename, error=ErrorCode.INTERNAL)
        if not result.ok:
            log.info("image %s not captioned: %s %s", att.filename, result.error, result.detail)
        return Outcome(att.filename, result=result, image_hash=image_hash, url=att.url)

    # -- corrections and the feedback buttons (feedback.py) ----------------------------------------------------------

    @staticmethod
    async def _hash(data: bytes, filename: str) -> str | None:
        try:
            return await asyncio.to_thread(perceptual_hash, data)
        except Exception as exc:  # the image passed probe_image; a hash failure only costs corrections
            log.warning("no perceptual hash for %s: %s", filename, exc)
            return None

    async def _corrected(self, att: discord.Attachment, image_hash: str, context: dict[str, Any]) -> Outcome | None:
        """A person's correction kept in this server for this picture, as the outcome (no model needed)."""
        guild = str(context.get("guild_id") or "")
        fix = await self.feedback.find(guild, image_hash) if guild else None
        if fix is None:
            return None
        log.info("image %s: using the correction kept in guild %s for this picture", att.filename, guild)
        result = CaptionResult(job_id=f"correction:{fix.hash}", ok=True, caption=fix.text, context=context)
        return Outcome(att.filename, result=result, image_hash=image_hash, corrected=True, url=att.url)

    def _buttons(self, outcomes: list[Outcome]) -> discord.ui.View | None:
        """Edit / 👍 / 👎 for a description, where the feedback extension is loaded to answer them."""
        if self.bot.get_cog("Feedback") is None or not any(o.image_hash for o in outcomes):
            return None
        return buttons_to_send()

    async def _posted(self, posted: discord.Message | None, outcomes: list[Outcome], length: str, *,
                      poster_id: int, guild_id: int | None, channel_id: int | None) -> None:
        """Keep a posted description (with buttons) in Redis, so its buttons work in any process, for 30 days.
        (``guild_id`` / ``channel_id`` are passed: a follow-up's message does not know its guild.)"""
        if posted is None or guild_id is None or channel_id is None or not any(o.image_hash for o in outcomes) \
                or self.bot.get_cog("Feedback") is None:
            return
        images = [DescribedImage(o.filename, s.text, s.status, o.image_hash, o.url)
                  for o, s in zip(outcomes, said_of(outcomes, length), strict=True)]
        await self.feedback.remember(Description(str(posted.id), str(guild_id), str(channel_id), str(poster_id),
                                                 images))

    async def caption_all(self, atts: list[discord.Attachment], *, heatmap: bool, beam: int | None,
                          context: dict[str, Any], person_waiting: bool = True, variants: int = 1) -> list[Outcome]:
        """Each attachment's outcome. With a person waiting (a command, a mention), all of them ``NO_WORKER`` at
        once when no caption worker is alive: refused rather than left to time out. Automatic alt text has nobody
        waiting: its jobs are queued and answered when a worker comes (until their deadline).

        A person waiting is served in the queue's high-priority lane, automation in the low one: however long the
        automatic alt-text backlog, workers take a command's image first."""
        if person_waiting and not await self.s.client.workers_alive():
            log.warning("no caption worker is alive: %d image(s) refused (%s)", len(atts), context.get("kind"))
            return [Outcome(a.filename, error=ErrorCode.NO_WORKER) for a in atts]
        priority = Priority.HIGH if person_waiting else Priority.LOW
        return list(await asyncio.gather(*(
            self.caption_one(a, heatmap=heatmap, beam=beam, context={**context, "attachment_id": str(a.id)},
                             priority=priority, variants=variants)
            for a in atts)))

    def _command_refusal(self, user_id: int, channel_id: int | None, guild_id: int | None, n: int) -> str | None:
        """Take ``n`` images from the commands budget; None when allowed, else what to tell the person asking."""
        hit = self.s.limits.commands.try_take(user_id, channel_id, guild_id, n)
        if hit is None:
            return None
        log.info("rate limit (%s): user %s in channel %s, guild %s asked for %d image(s)", hit.scope, user_id,
                 channel_id, guild_id, n)
        return hit.message()

    def _automation_allowed(self, message: discord.Message, n: int) -> bool:
        """Take ``n`` images from automatic alt text's own budget; over it, the message is skipped (a log line)."""
        assert message.guild is not None
        hit = self.s.limits.automation.try_take(message.author.id, message.channel.id, message.guild.id, n)
        if hit is not None:
            log.info("alt text for message %s skipped: the %s budget for automatic alt text (%d images per %g s) "
                     "is used up", message.id, hit.scope, hit.limit, hit.window_s)
        return hit is None

    @staticmethod
    def _context(interaction: discord.Interaction, kind: str) -> dict[str, Any]:
        return {"kind": kind, "interaction_id": str(interaction.id), "guild_id": str(interaction.guild_id or ""),
                "channel_id": str(interaction.channel_id or ""), "user_id": str(interaction.user.id)}

    # -- /caption --------------------------------------------------------------------------------------------

    @app_commands.command(name="caption", description="Describe an image in words, as alt text")
    @app_commands.describe(image="The image to describe",
                           heatmap="Also show where the model looked (default: this channel's setting)",
                           beam=f"Beam width: wider searches more captions ({MIN_BEAM_SIZE}-{MAX_BEAM_SIZE}, "
                                f"default {DEFAULT_BEAM_SIZE})",
                           voice="Also attach the description as speech (an audio file Discord plays)",
                           variants=f"Up to this many different descriptions, each with its confidence "
                                    f"({MIN_VARIANTS}-{MAX_VARIANTS}, default 1)")
    async def caption(self, interaction: discord.Interaction, image: discord.Attachment, heatmap: bool | None = None,
                      beam: app_commands.Range[int, MIN_BEAM_SIZE, MAX_BEAM_SIZE] | None = None,
                      voice: bool = False,
                      variants: app_commands.Range[int, MIN_VARIANTS, MAX_VARIANTS] = 1) -> None:
        try:
            check_metadata(image.content_type, image.size, self.s.config.settings.max_image_bytes, image.filename)
        except ImageRejected as exc:
            log.info("/caption refused %s: %s", image.filename, exc)
            return await answer_privately(interaction, exc.user_message)
        if not MIN_VARIANTS <= variants <= MAX_VARIANTS:  # Discord enforces the range; a forged value is told so
            log.info("/caption refused variants=%r", variants)
            return await answer_privately(interaction, f"Sorry, `variants` must be {MIN_VARIANTS} to {MAX_VARIANTS}.")
        if refusal := self._command_refusal(interaction.user.id, interaction.channel_id, interaction.guild_id, 1):
            return await answer_privately(interaction, refusal)
        if not await defer(interaction):
            return
        if heatmap is None:
            heatmap = await self._channel_wants_heatmap(interaction)
        [outcome] = await self.caption_all([image], heatmap=heatmap, beam=beam,
                                           context=self._context(interaction, "slash"), variants=variants)
        if outcome.ok:
            content = variants_text(outcome, variants) if variants > 1 else caption_text([outcome])
            files = heatmap_files([outcome])
            if voice:
                content, files = await self._with_speech(outcome, content, files)
            posted = await answer(interaction, content, files, view=self._buttons([outcome]))
            await self._posted(posted, [outcome], "text", poster_id=interaction.user.id,
                               guild_id=interaction.guild_id, channel_id=interaction.channel_id)
            if posted is not None:
                await index_description(self.find_index, interaction.guild_id, posted.channel.id, posted.id, content,
                                        [outcome])
        else:
            await answer_privately(interaction, outcome.text)

    @staticmethod
    async def _with_speech(outcome: Outcome, content: str,
                           files: list[discord.File]) -> tuple[str, list[discord.File]]:
        """The answer with the description spoken (then the text in the image) as ``description.ogg``; where speech
        cannot be made, the answer says so and a log line says why."""
        audio = await spoken_file([outcome])
        if audio is None:
            return f"{content}\n{UNAVAILABLE_NOTE}", files
        return content, [*files, audio]

    async def _channel_wants_heatmap(self, interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None or interaction.channel_id is None:
            return False
        return (await self.s.store.effective(interaction.guild_id, interaction.channel_id)).heatmap

    # -- "Describe image" (message context menu) -------------------------------------------------------------

    async def describe_image(self, interaction: discord.Interaction, message: discord.Message) -> None:
        images = [a for a in message.attachments if looks_like_image(a)][: self.s.config.images_per_message]
        if not images:
            return await answer_privately(interaction, "That message has no images I can describe.")
        if refusal := self._command_refusal(interaction.user.id, interaction.channel_id, interaction.guild_id,
                                            len(images)):
            return await answer_privately(interaction, refusal)
        if not await defer(interaction):
            return
        outcomes = await self.caption_all(images, heatmap=False, beam=None,
                                          context={**self._context(interaction, "menu"), "message_id": str(message.id)})
        if any(o.ok for o in outcomes):
            posted = await answer(interaction, caption_text(outcomes), view=self._buttons(outcomes))
            await self._posted(posted, outcomes, "text", poster_id=message.author.id, guild_id=interaction.guild_id,
                               channel_id=interaction.channel_id)
            if not await self._opted_out(interaction.guild_id, message.author.id):
                await index_description(self.find_index, interaction.guild_id, message.channel.id, message.id,
                                        caption_text(outcomes), outcomes)
        else:
            await answer_privately(interaction, caption_text(outcomes))

    async def cog_app_command_error(self, interaction: discord.Interaction,
                                    error: app_commands.AppCommandError) -> None:
        log.error("%s failed", interaction.command and interaction.command.name, exc_info=error)
        await answer_privately(interaction, USER_MESSAGES[ErrorCode.INTERNAL])

    # -- automatic alt text ----------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.webhook_id or message.guild is None:
            return
        if self.bot.user is not None and self.bot.user.id in message.raw_mentions:
            return await self.on_mention(message)
        if not message.attachments:
            return
        images = [a for a in message.attachments if looks_like_image(a)]
        if not images:
            return
        wanted = await self.s.store.effective(message.guild.id, message.channel.id)
        if not wanted.enabled or await self.s.store.opted_out(message.guild.id, message.author.id):
            return
        if not wanted.all_images:
            images = [a for a in images if not a.description]
        images = images[: self.s.config.images_per_message]
        if not images or not await self._claim(message.id):
            return
        if self._automation_allowed(message, len(images)):
            context = {"kind": "alttext", "guild_id": str(message.guild.id), "channel_id": str(message.channel.id),
                       "message_id": str(message.id)}
            outcomes = await self.caption_all(images, heatmap=wanted.heatmap, beam=None, context=context,
                                              person_waiting=False)
            if wanted.mode == "repost" and await self._reposted(message, images, outcomes, wanted.length,
                                                                wanted.skip_uncertain):
                outcomes = []  # the images carry their descriptions now: no reply
            if wanted.skip_uncertain:
                outcomes = self._without_uncertain(outcomes, message)
            if outcomes:
                files = heatmap_files(outcomes)
                if wanted.voice and (audio := await spoken_file(outcomes, wanted.length)) is not None:
                    files.append(audio)
                content = caption_text(outcomes, wanted.length)
                posted = await reply_to(message, content, files, retry=self.s.config.reply_retry,
                                        view=self._buttons(outcomes))
                await self._remember(message, posted)
                await self._posted(posted, outcomes, wanted.length, poster_id=message.author.id,
                                   guild_id=message.guild.id, channel_id=message.channel.id)
                if posted is not None:
                    await index_description(self.find_index, message.guild.id, message.channel.id, message.id,
                                            content, outcomes)
        await self._done(message.id)

    async def _reposted(self, message: discord.Message, images: list[discord.Attachment], outcomes: list[Outcome],
                        length: str, skip_uncertain: bool) -> bool:
        """Repost mode (bot/repost.py): True when the message needs no reply (reposted with its alt text, or
        deleted meanwhile); False when the original stays and gets a reply as in reply mode."""
        alt = alt_texts(images, outcomes, length, skip_uncertain)
        if not alt:
            return False
        done = await self.s.reposter.repost(message, alt, view=self._buttons(outcomes))
        if done.message is not None:
            await self._posted_repost(done.message, message, images, outcomes, alt)
            if done.result is Result.REPOSTED and message.guild is not None:  # /find links to the repost
                await index_description(self.find_index, message.guild.id, message.channel.id, done.message.id,
                                        "\n".join(alt.values()), outcomes)
        return done.result is not Result.KEPT

    async def _posted_repost(self, repost: discord.WebhookMessage, original: discord.Message,
                             images: list[discord.Attachment], outcomes: list[Outcome], alt: dict[int, str]) -> None:
        """Keep a repost's description record (as :meth:`_posted` does for replies): each described image's alt
        text and its place in the repost, so Edit changes that file's alt text (``feedback.py``)."""
        if original.guild is None or not any(o.image_hash for o in outcomes) or self.bot.get_cog("Feedback") is None:
            return
        position = {a.id: i for i, a in enumerate(original.attachments)}
        described = []
        for att, o in zip(images, outcomes, strict=True):
            i = position[att.id]
            status = "failed" if att.id not in alt else "corrected" if o.corrected else "ok"
            url = repost.attachments[i].url if i < len(repost.attachments) else ""
            described.append(DescribedImage(att.filename, alt.get(att.id, ""), status, o.image_hash, url,
                                            position=i))
        await self.feedback.remember(Description(str(repost.id), str(original.guild.id), str(original.channel.id),
                                                 str(original.author.id), described, repost=True))

    # -- a mention: describe the images it carries or replies to, else a short help ---------------------------

    async def on_mention(self, message: discord.Message) -> None:
        """Someone mentioned the bot: describe the images in that message, or in the message it replies to;
        with no images in either, answer with a short help. Each mention is answered once."""
        images = [a for a in message.attachments if looks_like_image(a)]
        poster_id = message.author.id  # whose images these are (who may edit their description)
        holder = message  # the message whose images are described (indexed for /find under its id)
        if not images and message.reference is not None and message.reference.message_id is not None:
            target = await self._referenced(message)
            images = [a for a in target.attachments if looks_like_image(a)] if target else []
            poster_id = target.author.id if target else poster_id
            holder = target or message
        if not await self._claim(message.id):
            return
        retry = self.s.config.reply_retry
        images = images[: self.s.config.images_per_message]
        assert message.guild is not None  # on_message answers guild messages only
        if not images:
            await reply_to(message, MENTION_HELP, retry=retry)
        elif refusal := self._command_refusal(message.author.id, message.channel.id, message.guild.id, len(images)):
            await reply_to(message, refusal, retry=retry)
        else:
            context = {"kind": "mention", "guild_id": str(message.guild.id), "channel_id": str(message.channel.id),
                       "message_id": str(message.id), "user_id": str(message.author.id)}
            outcomes = await self.caption_all(images, heatmap=False, beam=None, context=context)
            posted = await reply_to(message, caption_text(outcomes), retry=retry, view=self._buttons(outcomes))
            await self._remember(message, posted)
            await self._posted(posted, outcomes, "text", poster_id=poster_id, guild_id=message.guild.id,
                               channel_id=message.channel.id)
            if posted is not None and not await self._opted_out(message.guild.id, holder.author.id):
                await index_description(self.find_index, message.guild.id, holder.channel.id, holder.id,
                                        caption_text(outcomes), outcomes)
        await self._done(message.id)

    # -- a reply goes when its message goes --------------------------------------------------------------------

    async def _remember(self, message: discord.Message, reply: discord.Message | None) -> None:
        """Keep which reply answers ``message`` (a Redis key with a TTL), so it can follow the message out."""
        if reply is not None:
            await self.s.redis.set(self.s.keys.reply_of(message.id), f"{reply.channel.id}:{reply.id}",
                                   ex=REPLY_MAP_TTL_S)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """A described message was deleted: delete the bot's description of it too."""
        found = await self.s.redis.getdel(self.s.keys.reply_of(payload.message_id))
        if not found:
            return
        channel_id, _, reply_id = (found.decode() if isinstance(found, bytes) else found).partition(":")
        try:
            await self.bot.http.delete_message(int(channel_id), int(reply_id),
                                               reason="the described message was deleted")
            log.info("message %s deleted: its description %s deleted too", payload.message_id, reply_id)
        except discord.NotFound:
            pass  # already gone
        except discord.HTTPException as exc:
            log.warning("could not delete description %s of deleted message %s: %s", reply_id,
                        payload.message_id, exc)

    async def _opted_out(self, guild_id: int | None, user_id: int) -> bool:
        """Whether the poster of an image opted out of automatic alt text here: their images are then not indexed
        for /find either, whoever asks for a description."""
        return guild_id is not None and await self.s.store.opted_out(guild_id, user_id)

    @staticmethod
    async def _referenced(message: discord.Message) -> discord.Message | None:
        """The message ``message`` replies to (as Discord sent it along, else fetched), or None if it is gone."""
        assert message.reference is not None and message.reference.message_id is not None
        if isinstance(message.reference.resolved, discord.Message):
            return message.reference.resolved
        try:
            return await message.channel.fetch_message(message.reference.message_id)
        except discord.HTTPException as exc:
            log.info("mention in message %s replies to a message I cannot read: %s", message.id, exc)
            return None

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

    # -- answering each message once, across redeliveries, restarts and bot processes -------------------------

    async def _claim(self, message_id: int) -> bool:
        """Take a message to answer: True for one bot process only. The claim is a Redis mark that expires after
        the longest a reply can take, so a message claimed by a process that died is answered after a
        redelivery; :meth:`_done` makes it a 24 h mark once the reply is out (or given up on)."""
        return bool(await self.s.redis.set(self.s.keys.handled(message_id), b"claimed", nx=True,
                                           ex=self._claim_ttl_s()))

    async def _done(self, message_id: int) -> None:
        await self.s.redis.set(self.s.keys.handled(message_id), b"done", ex=HANDLED_TTL_S)

    def _claim_ttl_s(self) -> int:
        c = self.s.config
        # download + queue + (repost mode: download again, post, delete) + reply, each send with its retries
        sends = 3 * c.reply_retry.total_wait_s
        return int(c.settings.result_timeout_s + 2 * c.download_timeout_s + sends) + CLAIM_SLACK_S


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Captions(bot, await services_mod.acquire(bot, __name__)))


async def teardown(bot: commands.Bot) -> None:
    await services_mod.release(bot, __name__)
