"""How answers look and how they are sent: alt-text-style captions, heatmaps as PNGs, never a mention.

Sending handles what Discord may refuse: without permission to attach files the reply goes out as text only;
without permission to send at all the failure is logged and the bot carries on. Transient failures (a 503, a
dropped connection) are retried with bounded backoff (``retry.py``).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import discord
from captionbot.bot.retry import GaveUp, Retry, with_retries

from captionbot.formats import USER_MESSAGES, CaptionResult, ErrorCode

log = logging.getLogger(__name__)
NO_MENTIONS = discord.AllowedMentions.none()
DISCORD_MESSAGE_LIMIT = 2000
DEFAULT_RETRY = Retry()
SHORT_WORDS = 8  # a "short" description says at most this many words


@dataclass
class Outcome:
    """One image's answer: a caption result, or why it was refused before it reached the queue."""

    filename: str
    result: CaptionResult | None = None
    error: ErrorCode | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok

    @property
    def error_code(self) -> ErrorCode | None:
        if self.error is not None:
            return self.error
        return self.result.error if self.result is not None else ErrorCode.INTERNAL

    @property
    def text(self) -> str:
        if self.result is not None and self.result.ok:
            return sentence(self.result.caption)
        return USER_MESSAGES[self.error_code or ErrorCode.INTERNAL]


def sentence(caption: str) -> str:
    """'a dog runs on grass' -> 'A dog runs on grass.'"""
    text = " ".join(caption.split())
    if not text:
        return "(no description)"
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def caption_text(outcomes: Sequence[Outcome], length: str = "text") -> str:
    """Alt-text style: one image -> 'Image description: …'; several -> a numbered list, one line each. With
    ``length`` "text", text read in an image follows its description ("Text in image: …", verbatim, Discord
    formatting escaped); "model" leaves it out; "short" also cuts the description to a few words."""

    def said(o: Outcome, before: str) -> str:
        if length == "short":
            return short(o.text)
        return o.text + (image_text(o, before) if length == "text" else "")

    if len(outcomes) == 1:
        o = outcomes[0]
        return (f"Image description: {said(o, chr(10))}" if o.ok else o.text)[:DISCORD_MESSAGE_LIMIT]
    lines = ["Image descriptions:"]
    for i, o in enumerate(outcomes, 1):
        lines.append(f"{i}. {said(o, ' ')}" if o.ok else f"{i}. (not captioned) {o.text}")
    return "\n".join(lines)[:DISCORD_MESSAGE_LIMIT]


def short(text: str, words: int = SHORT_WORDS) -> str:
    """At most ``words`` words of ``text``, ending in '…' when cut: 'A girl in a pink shirt is sitting on a
    bench.' -> 'A girl in a pink shirt is sitting…'."""
    parts = text.split()
    if len(parts) <= words:
        return text
    return " ".join(parts[:words]).rstrip(",;:") + "…"


def image_text(o: Outcome, before: str = "\n") -> str:
    """``before`` + 'Text in image: …' when the worker read text in the image, else ''."""
    text = o.result.text if o.ok and o.result else ""
    return f"{before}Text in image: {discord.utils.escape_markdown(text)}" if text else ""


def heatmap_files(outcomes: Sequence[Outcome]) -> list[discord.File]:
    """The attention heatmaps that came back, as PNG attachments with alt text of their own."""
    files = []
    for i, o in enumerate(outcomes, 1):
        png = o.result.heatmap_png if o.ok and o.result else None
        if png:
            name = "heatmap.png" if len(outcomes) == 1 else f"heatmap-{i}.png"
            files.append(discord.File(io.BytesIO(png), name, description=f"Attention heatmap: {o.text}"[:1024]))
    return files


async def reply_to(message: discord.Message, content: str, files: list[discord.File] | None = None, *,
                   retry: Retry = DEFAULT_RETRY) -> discord.Message | None:
    """Reply to ``message`` without mentioning anyone, retrying transient failures (``retry``). Returns the reply;
    None after a refusal or after giving up (both logged)."""

    async def send() -> discord.Message:
        for f in files or []:
            f.reset()  # a retried upload starts from the file's beginning again
        return await message.reply(content, files=files or [], allowed_mentions=NO_MENTIONS, mention_author=False)

    try:
        return await with_retries(send, f"reply to message {message.id}", retry)
    except GaveUp:
        pass
    except discord.Forbidden as exc:
        if files:
            log.warning("cannot attach files in channel %s (%s); replying with text only", message.channel.id, exc)
            return await reply_to(message, content, retry=retry)
        log.warning("cannot reply in channel %s: %s", message.channel.id, exc)
    except discord.HTTPException as exc:
        log.error("reply to message %s failed: %s", message.id, exc)
    return None


async def defer(interaction: discord.Interaction, *, ephemeral: bool = False) -> bool:
    """Acknowledge at once ("thinking…"): Discord allows 3 s for the first response. False if that failed."""
    try:
        await interaction.response.defer(ephemeral=ephemeral, thinking=True)
        return True
    except discord.HTTPException as exc:  # expired (over 3 s) or already answered: nothing more can be sent
        log.warning("could not defer interaction %s: %s", interaction.id, exc)
        return False


async def answer(interaction: discord.Interaction, content: str,
                 files: list[discord.File] | None = None) -> discord.WebhookMessage | None:
    """Complete a deferred interaction with a public answer; returns the message (None when sending failed).
    (discord.py's webhook client, which sends follow-ups, retries every 5xx itself, unlike its channel-message
    client.)"""
    try:
        return await interaction.followup.send(content, files=files or [], allowed_mentions=NO_MENTIONS, wait=True)
    except discord.HTTPException as exc:
        log.error("follow-up for interaction %s failed: %s", interaction.id, exc)
        return None


async def answer_privately(interaction: discord.Interaction, content: str) -> None:
    """Tell only the person who asked (ephemeral), whether or not the interaction was deferred publicly."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(content, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        # A deferred interaction's first follow-up fills the public "thinking" message: remove that first.
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
        await interaction.followup.send(content, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException as exc:
        log.error("could not answer interaction %s: %s", interaction.id, exc)
