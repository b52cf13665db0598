"""How ``/caption … variants:N`` answers: up to N different descriptions of one image, each with its confidence.

    Image descriptions (3 different ones, with how likely each is right):
    1. A little girl in a pink shirt is sitting on a wooden bench. (46%)
    2. A little girl in a pink shirt is jumping off of a wooden fence. (32%)
    3. A girl in a pink shirt is sitting on a wooden bench in front of a building. (40%)

The first is always the description the image gets without variants. Fewer come back when the model's captions
agree word for word (a note says so). Text read in the image follows, as in every answer.
"""

from __future__ import annotations

import discord
from captionbot.bot.replies import DISCORD_MESSAGE_LIMIT, Outcome, caption_text, image_text, sentence


def variants_text(outcome: Outcome, asked: int) -> str:
    """The answer for one image captioned with ``asked`` > 1 variants (an ordinary answer when none came back)."""
    found = outcome.result.variants if outcome.ok and outcome.result is not None else []
    if not found:
        return caption_text([outcome])
    lines = [f"Image descriptions ({len(found)} different ones, with how likely each is right):"
             if len(found) > 1 else "Image description:"]
    lines += [f"{n}. {discord.utils.escape_markdown(sentence(caption))} ({confidence:.0%})"
              for n, (caption, confidence) in enumerate(found, 1)]
    if len(found) < asked:
        lines.append(f"(The model's other {asked - len(found)} came out the same, so they are left out.)"
                     if asked - len(found) > 1 else "(The model's other description came out the same.)")
    return ("\n".join(lines) + image_text(outcome))[:DISCORD_MESSAGE_LIMIT]
