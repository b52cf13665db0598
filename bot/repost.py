"""Repost mode: alt text on the image itself.

Discord lets a bot set an attachment's description (its alt text, at most 1,024 characters) only on files it
uploads. In a channel set to repost mode (``/alttext on channel:#x mode:repost``), :meth:`Reposter.repost` posts
the message again through the channel's webhook (one named after the bot, created once and reused) under the
author's display name and avatar: the same text (mentions not pinged again, no second notification), every file
uploaded again, each image described by the bot carrying its description as alt text (other files keep theirs).
Only when Discord has accepted the repost is the original deleted.

Nothing is lost. Whenever a repost cannot be made whole, the original stays and the caller replies instead
(``Result.KEPT``, with a log line saying why): the bot lacks Manage Webhooks or Manage Messages there; the message
replies to another one, or carries stickers, a poll or a voice note, or text over 2,000 characters (a webhook
cannot post those); a file cannot be downloaded again or is over the upload limit; Discord refuses the webhook
post. If the original cannot be deleted after a repost, the repost is deleted again and the caller replies.

The repost can carry buttons (``view``: the *Edit* / 👍 / 👎 of ``feedback.py``; Discord lets a webhook send
interactive components only when an application owns it, as the bot's own webhook is). For the *Edit* button
(issue 15, item 7): :meth:`Reposter.edit_alt_text` changes the alt text of a reposted image. Discord has no way
to change an uploaded file's description in place, so it uploads the message's files again with the new
descriptions, in one edit of the same webhook message (same message id and place in the channel; the attachments
get new ids and URLs; the buttons stay).
"""

from __future__ import annotations

import asyncio
import enum
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
import discord
from captionbot.bot import log_redact
from captionbot.bot.image_fetch import download
from captionbot.bot.replies import NO_MENTIONS, Outcome, short
from captionbot.bot.retry import GaveUp, Retry, with_retries

from captionbot.formats import ImageRejected

log = logging.getLogger(__name__)
MAX_ALT_TEXT = 1024  # Discord's limit on an attachment's description
MAX_WEBHOOK_CONTENT = 2000
NEEDED = {"manage_webhooks": "Manage Webhooks", "manage_messages": "Manage Messages"}
FALLBACK_WEBHOOK_NAME = "Alt text"  # when the bot's own name is one Discord refuses for webhooks


class Result(enum.Enum):
    REPOSTED = "reposted"  # the repost is up, the original deleted
    KEPT = "kept"  # nothing reposted (or the repost taken back): the original stays; reply instead
    GONE = "gone"  # the original was deleted by someone else meanwhile; the repost was taken back


@dataclass(frozen=True)
class Reposted:
    """What :meth:`Reposter.repost` did, and the repost itself when it is up (``Result.REPOSTED``)."""

    result: Result
    message: discord.WebhookMessage | None = None


def missing_permissions(channel: discord.abc.GuildChannel, me: discord.Member) -> list[str]:
    """The permissions repost mode needs in ``channel`` that ``me`` lacks there, by their names in Discord."""
    have = channel.permissions_for(me)
    return [name for attr, name in NEEDED.items() if not getattr(have, attr)]


def alt_text(outcome: Outcome, length: str) -> str:
    """An image's description as alt text, as much as the channel's ``length`` says (see ``caption_text``); a
    person's correction (``outcome.corrected``) as they wrote it, whatever the length."""
    said = short(outcome.text) if length == "short" and not outcome.corrected else outcome.text
    if length == "text" and outcome.result is not None and outcome.result.text:
        said += f" Text in image: {outcome.result.text}"  # alt text is plain text: no Markdown escaping
    return said[:MAX_ALT_TEXT]


def alt_texts(images: Sequence[discord.Attachment], outcomes: Sequence[Outcome], length: str,
              skip_uncertain: bool) -> dict[int, str]:
    """Attachment id -> the alt text to give it, for each image the model described (uncertain descriptions left
    out where the channel skips them)."""
    return {att.id: alt_text(o, length) for att, o in zip(images, outcomes, strict=True)
            if o.ok and not (skip_uncertain and o.result is not None and o.result.uncertain)}


def why_not_repostable(message: discord.Message, upload_limit: int) -> str | None:
    """Why a webhook could not post ``message`` again as it is, or None."""
    if message.type is not discord.MessageType.default or message.reference is not None:
        return "it replies to or forwards another message"
    if message.stickers or message.poll is not None or message.flags.voice:
        return "it carries stickers, a poll or a voice message"
    if len(message.content) > MAX_WEBHOOK_CONTENT:
        return f"its text is over {MAX_WEBHOOK_CONTENT} characters"
    if too_big := [a.filename for a in message.attachments if a.size > upload_limit]:
        return f"{', '.join(too_big)} is over the upload limit ({upload_limit} bytes)"
    return None


# Discord refuses a webhook username that contains "clyde" or "discord" or is "everyone" or "here" (400): such a
# name is written with one Cyrillic look-alike letter instead (о U+043E, е U+0435), so the post still shows it.
LOOKALIKES = (("discord", 4, "\u043e"), ("clyde", 4, "\u0435"), ("everyone", 0, "\u0435"), ("here", 1, "\u0435"))


def webhook_username(name: str) -> str:
    """``name`` as a webhook may post under it: 1-80 characters, the words Discord refuses spelt with a
    look-alike letter (``"Discord Dan"`` -> ``"Discоrd Dan"``, Cyrillic о)."""
    name = name.strip()[:80] or "Someone"
    for word, at, letter in LOOKALIKES:
        exact_only = word in ("everyone", "here")
        lower = name.lower()
        if exact_only and lower != word:
            continue
        start = lower.find(word)
        while start >= 0:
            same_case = letter.upper() if name[start + at].isupper() else letter
            name = name[:start + at] + same_case + name[start + at + 1:]
            start = name.lower().find(word)
    return name


def webhook_name(me: discord.ClientUser | discord.Member) -> str:
    """The name of the bot's webhook in each channel: the bot's own name, where Discord allows it."""
    name = me.name[:80]
    return FALLBACK_WEBHOOK_NAME if any(w in name.lower() for w in ("clyde", "discord")) else name


@dataclass
class Reposter:
    """Reposts messages through each channel's webhook (kept per channel once found or created)."""

    http: aiohttp.ClientSession
    cdn_origins: tuple[str, ...]
    download_timeout_s: float
    retry: Retry = field(default_factory=Retry)
    _hooks: dict[int, discord.Webhook] = field(default_factory=dict)
    _finding: dict[int, asyncio.Lock] = field(default_factory=dict)  # one lookup per channel at a time

    def __post_init__(self) -> None:
        log_redact.install()  # a webhook's token lets anyone post as anyone: never in the log, even at DEBUG

    async def webhook_for(self, channel: discord.TextChannel, *, create: bool = True) -> discord.Webhook | None:
        """The bot's webhook in ``channel``: the one kept, else one it made earlier (found by listing the channel's
        webhooks), else a new one (``create``). Needs Manage Webhooks; raises discord.HTTPException otherwise."""
        async with self._finding.setdefault(channel.id, asyncio.Lock()):  # photos posted at once: one webhook
            return await self._find_or_make(channel, create)

    async def _find_or_make(self, channel: discord.TextChannel, create: bool) -> discord.Webhook | None:
        if (kept := self._hooks.get(channel.id)) is not None:
            return kept
        me = channel.guild.me
        name = webhook_name(me)
        mine = [h for h in await channel.webhooks() if h.token and h.user is not None and h.user.id == me.id
                and h.name == name]
        if mine:
            hook: discord.Webhook | None = mine[0]
        elif create:
            hook = await channel.create_webhook(name=name, reason="alt text: repost mode")
            log.info("created webhook %s in channel %s for repost mode", hook.id, channel.id)
        else:
            hook = None
        if hook is not None:
            self._hooks[channel.id] = hook
        return hook

    def forget(self, channel_id: int) -> None:
        """Drop the kept webhook (it was deleted on Discord); the next use looks again."""
        self._hooks.pop(channel_id, None)

    async def _files(self, attachments: Sequence[discord.Attachment], descriptions: Mapping[int, str | None],
                     limit: int) -> list[discord.File]:
        """Every attachment downloaded again (at once, each capped and timed), as a file to upload with
        ``descriptions[i]`` (by position) or its own description."""
        datas = await asyncio.gather(*(
            download(self.http, att.url, allowed_origins=self.cdn_origins, max_bytes=limit,
                     timeout_s=self.download_timeout_s) for att in attachments))
        files = []
        for i, (att, data) in enumerate(zip(attachments, datas, strict=True)):
            description = descriptions.get(i, att.description)
            files.append(discord.File(io.BytesIO(data), att.filename,
                                      description=description[:MAX_ALT_TEXT] if description else None))
        return files

    async def repost(self, message: discord.Message, alt: Mapping[int, str],
                     view: discord.ui.View | None = None) -> Reposted:
        """Post ``message`` again with ``alt`` (attachment id -> alt text) on its images, and ``view``'s buttons
        when given, then delete it. See the module docstring for what is never lost; every outcome but REPOSTED
        comes with a log line."""
        kept = Reposted(Result.KEPT)
        channel, guild = message.channel, message.guild
        if not isinstance(channel, discord.TextChannel) or guild is None:
            log.info("repost mode: message %s is not in a text channel; replying instead", message.id)
            return kept
        if missing := missing_permissions(channel, guild.me):
            log.warning("repost mode in channel %s: I lack %s there; replying to message %s instead", channel.id,
                        " and ".join(missing), message.id)
            return kept
        if (why := why_not_repostable(message, guild.filesize_limit)) is not None:
            log.info("message %s not reposted (%s); replying instead", message.id, why)
            return kept
        try:
            by_position = {i: alt[a.id] for i, a in enumerate(message.attachments) if a.id in alt}
            files = await self._files(message.attachments, by_position, guild.filesize_limit)
            posted = await self._post(channel, message, files, view)
        except ImageRejected as exc:
            log.warning("message %s not reposted: a file could not be downloaded again (%s); replying instead",
                        message.id, exc)
            return kept
        except (discord.HTTPException, GaveUp) as exc:
            log.warning("message %s not reposted: Discord refused the webhook post (%s); the original stays, "
                        "replying instead", message.id, exc)
            return kept
        except Exception:  # nothing was posted: the original is intact, and a reply still describes it
            log.exception("message %s not reposted (unexpected error); the original stays, replying instead",
                          message.id)
            return kept
        result = await self._delete_original(message, posted)
        return Reposted(result, posted if result is Result.REPOSTED else None)

    async def _post(self, channel: discord.TextChannel, message: discord.Message, files: list[discord.File],
                    view: discord.ui.View | None = None) -> discord.WebhookMessage:
        author = message.author
        components = discord.utils.MISSING if view is None else view

        async def send() -> discord.WebhookMessage:
            hook = await self.webhook_for(channel)
            assert hook is not None  # webhook_for(create=True) makes one or raises
            for f in files:
                f.reset()
            return await hook.send(content=message.content or discord.utils.MISSING,
                                   username=webhook_username(author.display_name),
                                   avatar_url=author.display_avatar.url, files=files, allowed_mentions=NO_MENTIONS,
                                   suppress_embeds=message.flags.suppress_embeds, silent=True, wait=True,
                                   view=components)

        try:
            return await with_retries(send, f"repost of message {message.id}", self.retry)
        except discord.NotFound:  # the kept webhook was deleted: find or make another, once
            self.forget(channel.id)
            return await with_retries(send, f"repost of message {message.id}", self.retry)

    async def _delete_original(self, message: discord.Message, posted: discord.WebhookMessage) -> Result:
        try:
            await with_retries(message.delete, f"deleting reposted message {message.id}", self.retry)
        except discord.NotFound:
            log.info("message %s was deleted while it was reposted; deleting the repost %s", message.id, posted.id)
            await self._take_back(posted)
            return Result.GONE
        except (discord.HTTPException, GaveUp) as exc:
            log.warning("message %s reposted as %s but could not be deleted (%s); repost taken back, replying "
                        "instead", message.id, posted.id, exc)
            await self._take_back(posted)
            return Result.KEPT
        log.info("message %s reposted as %s with alt text", message.id, posted.id)
        return Result.REPOSTED

    @staticmethod
    async def _take_back(posted: discord.WebhookMessage) -> None:
        try:
            await posted.delete()
        except discord.HTTPException as exc:
            log.error("could not delete repost %s (the original stays too): %s", posted.id, exc)

    async def edit_alt_text(self, message: discord.Message, descriptions: Mapping[int, str]) -> discord.WebhookMessage:
        """Change the alt text of files in ``message``, a repost by this bot's webhook. ``descriptions`` maps a
        file's position in the message (0-based) to its new alt text (cut to 1,024 characters); the other files
        keep theirs. The files are uploaded again in one edit of the same message (see the module docstring).

        Raises ValueError when ``message`` is not a repost by this bot's webhook in its channel,
        ``ImageRejected`` when a file cannot be downloaded again, discord.HTTPException as Discord answers."""
        channel, guild = message.channel, message.guild
        if not isinstance(channel, discord.TextChannel) or guild is None or message.webhook_id is None:
            raise ValueError(f"message {message.id} is not a webhook message in a text channel")
        hook = await self.webhook_for(channel, create=False)
        if hook is None or hook.id != message.webhook_id:
            raise ValueError(f"message {message.id} was not posted by this bot's webhook")
        files = await self._files(message.attachments, descriptions, guild.filesize_limit)
        edited = await hook.edit_message(message.id, attachments=files, allowed_mentions=NO_MENTIONS)
        log.info("alt text of repost %s changed (files %s)", message.id, sorted(descriptions))
        return edited

