"""Spoken descriptions attached to answers: what is said for one or several images, and the audio file itself.

``/caption … voice:true`` and channels whose automatic alt text has ``voice`` on attach ``description.ogg``
(``bot/speech.py``): the description, then any text read in the image; for several images, "Image 1: …",
"Image 2: …" in one file. Only images that were described are spoken; refusals are not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord
from captionbot.bot.replies import Outcome, sentence, short
from captionbot.bot.speech import SpeechFailed, SpeechUnavailable, engine_path, speak_async, spoken_text

log = logging.getLogger(__name__)
UNAVAILABLE_NOTE = "(A spoken description is not available here.)"


def what_to_say(outcomes: Sequence[Outcome], length: str = "text") -> str:
    """The words to speak for these outcomes, following the channel's ``length`` (short / model / text)."""
    described = [o for o in outcomes if o.ok and o.result is not None]
    parts = []
    for i, o in enumerate(described, 1):
        assert o.result is not None
        said = short(sentence(o.result.caption)) if length == "short" else o.result.caption
        part = spoken_text(said, o.result.text if length == "text" else "", max_chars=10_000)
        parts.append(f"Image {i}: {part}" if len(described) > 1 else part)
    return " ".join(parts)


def speech_problem() -> str | None:
    """Why speech cannot be made on this host (no espeak-ng), or None when it can."""
    try:
        engine_path()
    except SpeechUnavailable as exc:
        return str(exc)
    return None


async def spoken_file(outcomes: Sequence[Outcome], length: str = "text") -> discord.File | None:
    """``description.ogg`` saying the described images, or None (nothing described, or speech failed: logged)."""
    words = what_to_say(outcomes, length)
    if not words:
        return None
    try:
        audio = await speak_async(words)
    except (SpeechUnavailable, SpeechFailed, ValueError) as exc:
        log.warning("spoken description not made: %s", exc)
        return None
    return audio.discord_file(f"Spoken description: {words}"[:1024])
