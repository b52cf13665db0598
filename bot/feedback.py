"""Correct it, and learn from it: buttons on each description the bot posts, and ``/feedback`` for moderators.

- **Edit** (the image's poster, or a member with Manage Messages; anyone else gets a private refusal) opens a
  modal prefilled with what the description says (one box per image, at most 5, 1,024 characters each). On submit
  the bot's message is updated in place, marked "corrected by a person", and the correction is kept for the server
  under the image's perceptual hash: the same picture posted again there (re-encoded, resized) is described with
  the person's words at once, without the model.
- On a repost (repost mode, ``bot/repost.py``) the description is the images' alt text and the buttons are on
  the repost: the poster is the member it was reposted for; Edit opens the box prefilled with the alt text, and
  on submit the alt text itself is changed (``Reposter.edit_alt_text``, which uploads the files again) before the
  correction is kept.
- **👍 / 👎** record one vote per person per description; pressing the other one changes it.
- ``/feedback images keep:`` (Manage Server) lets corrections keep a copy of the image for
  ``captionbot feedback export``; ``/feedback status``; ``/feedback wipe`` (Manage Server) forgets everything.

The buttons are a persistent view (fixed custom_ids, ``timeout=None``, registered with ``bot.add_view``), so they
work after a restart and in every bot process: what they act on is read from Redis (``corrections.py``) by the
message's id. Messages are sent with a *stopped* copy of the view, so discord.py does not keep one view object per
message in memory. Modals are answered here too (``on_interaction``), not by a Modal object waiting in one
process, so a modal opened before a restart, or served by another process, still works. Everything that comes
back (custom_ids, the modal's values, the stored record) is checked; anything off is refused with a private
message and a log line.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import logging
import re
import time
from typing import Any

import discord
from captionbot.bot import services as services_mod
from captionbot.bot.corrections import MAX_CORRECTION_CHARS, Correction, Description, FeedbackStore
from captionbot.bot.image_fetch import download
from captionbot.bot.image_hash import perceptual_hash, same_image
from captionbot.bot.replies import NO_MENTIONS, Said, answer_privately, render
from captionbot.bot.services import Services
from discord import app_commands
from discord.ext import commands

from captionbot.formats import ImageRejected

log = logging.getLogger(__name__)

EDIT_ID, UP_ID, DOWN_ID = "captionbot:fb1:edit", "captionbot:fb1:up", "captionbot:fb1:down"
MODAL_PREFIX = "captionbot:fb1:fix:"
MODAL_ID = re.compile(r"^captionbot:fb1:fix:([0-9]{1,20})$")
INPUT_ID = re.compile(r"^image:([0-4])$")
MAX_INPUTS = 5  # Discord's limit of text inputs in one modal
KEPT_IMAGE_SIDE = 512  # a kept copy is a JPEG at most this many pixels on its longest side
RECORD_WAIT_TRIES, RECORD_WAIT_S = 6, 0.25  # a press on a description posted a moment ago waits up to 1.5 s

NOT_ALLOWED = ("Only the person who posted the image, or a moderator with **Manage Messages**, can edit this "
               "description. You can still say whether it is right with 👍 / 👎.")
UNKNOWN = "I no longer have the details of this description (they are kept for 30 days), so it can't be changed."
BAD_EDIT = "Sorry, I couldn't apply that edit. Please press **Edit** on the description again."
ALT_TEXT_FAILED = "Sorry, I couldn't change the image's alt text just now, so nothing was changed. Please try again."


class FeedbackButtons(discord.ui.View):
    """Edit, 👍, 👎. Registered once per bot (``bot.add_view``) with the cog that answers them."""

    def __init__(self, cog: Feedback | None = None) -> None:
        super().__init__(timeout=None)
        self.cog = cog

    @discord.ui.button(label="Edit", emoji="✏️", style=discord.ButtonStyle.secondary, custom_id=EDIT_ID)
    async def edit(self, interaction: discord.Interaction, button: discord.ui.Button[FeedbackButtons]) -> None:
        if self.cog is not None:
            await self.cog.on_edit(interaction)

    @discord.ui.button(emoji="👍", style=discord.ButtonStyle.secondary, custom_id=UP_ID)
    async def up(self, interaction: discord.Interaction, button: discord.ui.Button[FeedbackButtons]) -> None:
        if self.cog is not None:
            await self.cog.on_vote(interaction, up=True)

    @discord.ui.button(emoji="👎", style=discord.ButtonStyle.secondary, custom_id=DOWN_ID)
    async def down(self, interaction: discord.Interaction, button: discord.ui.Button[FeedbackButtons]) -> None:
        if self.cog is not None:
            await self.cog.on_vote(interaction, up=False)


def buttons_to_send() -> discord.ui.View:
    """The buttons to put on a new description: a stopped view, so discord.py renders its components but does not
    keep it per message (the registered persistent view answers every press)."""
    view = FeedbackButtons()
    view.stop()
    return view


def store_for(services: Services) -> FeedbackStore:
    return FeedbackStore(services.redis, services.keys.jobs, services.config.max_corrections)


def may_edit(interaction: discord.Interaction, desc: Description) -> bool:
    return str(interaction.user.id) == desc.poster_id or interaction.permissions.manage_messages


def edited_values(components: Any, n_images: int) -> dict[int, str]:
    """The modal's values by image index, checked: text inputs ``image:<i>`` for images the description has, each
    1-1,024 characters after trimming. ValueError with a reason for anything else."""
    if not isinstance(components, list) or not components:
        raise ValueError("no components")
    values: dict[int, str] = {}
    for row in components:
        if not isinstance(row, dict):
            raise ValueError("a component is not an object")
        inner = row.get("components") if row.get("type") == 1 else [row.get("component")] if row.get("type") == 18 \
            else None
        if not isinstance(inner, list) or len(inner) != 1 or not isinstance(inner[0], dict):
            raise ValueError(f"unexpected component type {row.get('type')!r}")
        item = inner[0]
        m = INPUT_ID.match(str(item.get("custom_id", "")))
        value = item.get("value")
        if item.get("type") != 4 or m is None or int(m.group(1)) >= min(n_images, MAX_INPUTS) \
                or not isinstance(value, str):
            raise ValueError(f"unexpected input {str(item.get('custom_id'))[:40]!r}")
        text = value.strip()
        if not text:
            raise ValueError("empty")
        if len(text) > MAX_CORRECTION_CHARS:
            raise ValueError("too long")
        if int(m.group(1)) in values:
            raise ValueError("an input twice")
        values[int(m.group(1))] = text
    return values


def jpeg_copy(data: bytes) -> bytes:
    """A JPEG of the image at most :data:`KEPT_IMAGE_SIDE` px on its longest side (what a kept copy is)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        small = ImageOps.exif_transpose(img).convert("RGB")
        small.thumbnail((KEPT_IMAGE_SIDE, KEPT_IMAGE_SIDE))
        buf = io.BytesIO()
        small.save(buf, "JPEG", quality=88)
        return buf.getvalue()


@app_commands.guild_only()
class Feedback(commands.GroupCog, group_name="feedback", group_description="Corrections and votes on descriptions"):
    def __init__(self, bot: commands.Bot, services: Services) -> None:
        self.bot = bot
        self.s = services
        self.store = store_for(services)
        self.view = FeedbackButtons(self)
        super().__init__()

    async def cog_load(self) -> None:
        self.bot.add_view(self.view)

    async def cog_unload(self) -> None:
        self.view.stop()

    # -- the buttons ---------------------------------------------------------------------------------------------

    async def _description(self, interaction: discord.Interaction) -> Description | None:
        """The description whose button was pressed, checked against where it was pressed; None after telling the
        person privately."""
        message = interaction.message
        desc = await self.store.description(str(message.id)) if message is not None else None
        if desc is None and message is not None:
            # The record is written just after the description is posted: a press within that moment waits for it.
            for _ in range(RECORD_WAIT_TRIES):
                if discord.utils.utcnow() - message.created_at > datetime.timedelta(seconds=10):
                    break
                await asyncio.sleep(RECORD_WAIT_S)
                if (desc := await self.store.description(str(message.id))) is not None:
                    break
        if desc is None or desc.guild_id != str(interaction.guild_id) or desc.channel_id != str(interaction.channel_id):
            log.info("feedback on message %s by user %s: no description on record here",
                     message and message.id, interaction.user.id)
            await answer_privately(interaction, UNKNOWN)
            return None
        return desc

    async def on_vote(self, interaction: discord.Interaction, *, up: bool) -> None:
        desc = await self._description(interaction)
        if desc is None:
            return
        vote, mark = ("up", "👍") if up else ("down", "👎")
        before = await self.store.vote(desc.message_id, str(interaction.user.id), up)
        log.info("description %s: user %s voted %s (before: %s)", desc.message_id, interaction.user.id, vote, before)
        if before == vote:
            text = f"You already gave this description a {mark}; it counts once."
        elif before:
            text = f"Changed: your vote on this description is now {mark}."
        else:
            text = f"Thanks, your {mark} is recorded. Pressing the other one changes it."
        await answer_privately(interaction, text)

    async def on_edit(self, interaction: discord.Interaction) -> None:
        desc = await self._description(interaction)
        if desc is None:
            return
        if not may_edit(interaction, desc):
            log.info("edit of description %s refused to user %s (not the poster, no Manage Messages)",
                     desc.message_id, interaction.user.id)
            return await answer_privately(interaction, NOT_ALLOWED)
        title = "Edit the image's alt text" if desc.repost else "Edit the description"
        modal = discord.ui.Modal(title=title, custom_id=MODAL_PREFIX + desc.message_id)
        one = len(desc.images) == 1
        for i, im in enumerate(desc.images[:MAX_INPUTS]):
            label = ("Alt text" if desc.repost else "Image description") if one else f"Image {i + 1}: {im.filename}"
            modal.add_item(discord.ui.TextInput(label=label[:45], custom_id=f"image:{i}", default=im.text[:1024],
                                                style=discord.TextStyle.paragraph, max_length=MAX_CORRECTION_CHARS,
                                                min_length=1, required=True))
        modal.stop()  # answered by on_interaction below, in whichever process gets the submit
        try:
            await interaction.response.send_modal(modal)
        except discord.HTTPException as exc:
            log.warning("could not open the edit box for description %s: %s", desc.message_id, exc)

    # -- the modal ---------------------------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = data.get("custom_id")
        if isinstance(custom_id, str) and custom_id.startswith(MODAL_PREFIX):
            await self.on_fix(interaction, custom_id, data.get("components"))

    async def on_fix(self, interaction: discord.Interaction, custom_id: str, components: Any) -> None:
        """A submitted Edit box: check it, update the description in place, keep the correction."""
        m = MODAL_ID.match(custom_id)
        if m is None or interaction.message is None or str(interaction.message.id) != m.group(1):
            log.warning("edit from user %s refused: modal %r does not belong to message %s", interaction.user.id,
                        custom_id[:60], interaction.message and interaction.message.id)
            return await answer_privately(interaction, BAD_EDIT)
        desc = await self._description(interaction)
        if desc is None:
            return
        if not may_edit(interaction, desc):
            log.info("edit of description %s refused to user %s at submit", desc.message_id, interaction.user.id)
            return await answer_privately(interaction, NOT_ALLOWED)
        try:
            values = edited_values(components, len(desc.images))
        except ValueError as exc:
            log.warning("edit of description %s by user %s refused: %s", desc.message_id, interaction.user.id, exc)
            return await answer_privately(interaction, BAD_EDIT + " (A description can be 1 to 1,024 characters.)")
        multi = len(desc.images) > 1 and not desc.repost  # a numbered list keeps one line per image; alt text need not
        changed = [i for i, text in values.items() if text != desc.images[i].text]
        if not changed:
            return await answer_privately(interaction, "Nothing changed.")
        if desc.repost and not await self._edit_alt_text(interaction, desc, {i: values[i] for i in changed}):
            return
        for i in changed:
            im = desc.images[i]
            if im.status != "corrected":
                im.model_text = im.text
            im.text, im.status = (" ".join(values[i].split()) if multi else values[i]), "corrected"
        await self.store.update_description(desc)
        fixes = [Correction(im.hash, im.text, im.model_text, str(interaction.user.id), time.time())
                 for im in (desc.images[i] for i in changed) if im.hash]
        for fix in fixes:
            await self.store.correct(desc.guild_id, fix)
        log.info("description %s corrected by user %s (%d image(s), %d kept for reposts)", desc.message_id,
                 interaction.user.id, len(changed), len(fixes))
        if not desc.repost:  # a repost's alt text was changed above
            try:
                await interaction.response.edit_message(
                    content=render([Said(im.text, im.status) for im in desc.images]), allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as exc:
                log.error("could not update description %s after an edit: %s", desc.message_id, exc)
                return
        with_images = await self.store.keeps_images(desc.guild_id)
        what = "the image's alt text is" if desc.repost else "the description is"
        try:
            await interaction.followup.send(
                f"Thanks, {what} updated. When this picture is posted here again, I'll use your words.",
                ephemeral=True, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("could not confirm the edit of description %s: %s", desc.message_id, exc)
        if with_images:
            by_hash = {f.hash: f for f in fixes}
            for i in changed:
                await self._keep_image(desc, i, by_hash.get(desc.images[i].hash or ""))

    async def _edit_alt_text(self, interaction: discord.Interaction, desc: Description,
                             values: dict[int, str]) -> bool:
        """A repost's Edit box: change those images' alt text on the repost itself (``Reposter.edit_alt_text``,
        which uploads the files again: slow, so the submit is acknowledged first). Updates the images' URLs in
        ``desc``. False after telling the person privately that it could not be done (and a log line)."""
        try:
            await interaction.response.defer()  # a modal submit on a message: "deferred update", nothing visible
        except discord.HTTPException as exc:
            log.warning("could not acknowledge the edit of repost %s: %s", desc.message_id, exc)
            return False
        by_position: dict[int, str] = {}
        for i, text in values.items():
            if (position := desc.images[i].position) is not None:
                by_position[position] = text
        try:
            message = interaction.message
            if message is None or not isinstance(message.channel, discord.TextChannel):
                channel = self.bot.get_channel(int(desc.channel_id))
                if not isinstance(channel, discord.TextChannel):
                    raise ValueError(f"channel {desc.channel_id} is not a text channel I can see")
                message = await channel.fetch_message(int(desc.message_id))
            edited = await self.s.reposter.edit_alt_text(message, by_position)
        except (ValueError, ImageRejected, discord.HTTPException) as exc:
            log.warning("alt text of repost %s not changed for user %s: %s", desc.message_id, interaction.user.id,
                        exc)
            try:  # (not answer_privately: after a deferred update, "@original" is the repost itself)
                await interaction.followup.send(ALT_TEXT_FAILED, ephemeral=True, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as exc2:
                log.warning("could not tell user %s the edit failed: %s", interaction.user.id, exc2)
            return False
        for im in desc.images:
            if im.position is not None and im.position < len(edited.attachments):
                im.url = edited.attachments[im.position].url  # the files were uploaded again: new URLs
        return True

    async def _keep_image(self, desc: Description, i: int, fix: Correction | None) -> None:
        """The server keeps images with corrections: download the picture again and keep a small JPEG of it,
        only if it is still the picture that was described (same hash)."""
        im = desc.images[i]
        if fix is None or not im.url:
            return
        settings = self.s.config.settings
        try:
            data = await download(self.s.http, im.url, allowed_origins=self.s.config.cdn_origins,
                                  max_bytes=settings.max_image_bytes, timeout_s=self.s.config.download_timeout_s)
            h = await asyncio.to_thread(perceptual_hash, data)
            if not same_image(h, fix.hash):
                log.warning("description %s: the image at its URL changed; no copy kept", desc.message_id)
                return
            jpeg = await asyncio.to_thread(jpeg_copy, data)
        except ImageRejected as exc:
            log.info("description %s: no copy of image %d kept: %s", desc.message_id, i + 1, exc)
            return
        except Exception:
            log.exception("description %s: keeping a copy of image %d failed", desc.message_id, i + 1)
            return
        await self.store.correct(desc.guild_id, fix, jpeg)

    # -- /feedback ---------------------------------------------------------------------------------------------------

    async def _moderator(self, interaction: discord.Interaction) -> bool:
        if interaction.permissions.manage_guild:
            return True
        log.info("/feedback refused to user %s in guild %s (no Manage Server)", interaction.user.id,
                 interaction.guild_id)
        await answer_privately(interaction, "Sorry, that needs the **Manage Server** permission.")
        return False

    @app_commands.command(name="images", description="Keep a copy of corrected images, for training a better model")
    @app_commands.describe(keep="Keep copies (off: corrections keep text and image hashes only, and copies go)")
    async def images(self, interaction: discord.Interaction, keep: bool) -> None:
        if not await self._moderator(interaction):
            return
        guild = str(interaction.guild_id)
        await self.store.set_keep_images(guild, keep)
        log.info("guild %s: corrections keep images: %s (user %s)", guild, keep, interaction.user.id)
        text = ("Done. Corrections made from now on keep a small copy of the image (at most 512 px), so "
                "`captionbot feedback export` can include it." if keep else
                "Done. Corrections keep only the text and the image's hash; the copies kept so far are deleted.")
        await answer_privately(interaction, text)

    @app_commands.command(name="status", description="How many corrections this server keeps")
    async def status(self, interaction: discord.Interaction) -> None:
        st = await self.store.status(str(interaction.guild_id))
        await answer_privately(interaction, (
            f"This server keeps {st['corrections']} correction(s) (at most {st['max_corrections']}; the oldest go "
            f"first). Images are {'kept' if st['keep_images'] else 'not kept'} with corrections."))

    @app_commands.command(name="wipe", description="Forget every correction and vote in this server")
    async def wipe(self, interaction: discord.Interaction) -> None:
        if not await self._moderator(interaction):
            return
        n = await self.store.wipe(str(interaction.guild_id))
        log.info("guild %s: feedback wiped by user %s (%d correction(s))", interaction.guild_id, interaction.user.id, n)
        await answer_privately(interaction, f"Done. Forgot {n} correction(s), their images, and the votes.")

    async def cog_app_command_error(self, interaction: discord.Interaction,
                                    error: app_commands.AppCommandError) -> None:
        log.error("/feedback failed", exc_info=error)
        await answer_privately(interaction, "Sorry, something went wrong.")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Feedback(bot, await services_mod.acquire(bot, __name__)))


async def teardown(bot: commands.Bot) -> None:
    await services_mod.release(bot, __name__)
