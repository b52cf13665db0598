"""``/caption … variants:N`` end to end: real discord.py, the stand-in, real Redis, a real worker and model."""

from __future__ import annotations

import re

from bot_story import BotUnderTest, answered
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost

LINE = re.compile(r"(\d)\. (.+[.!?]) \((\d{1,3})%\)")


async def test_caption_with_variants_gives_different_descriptions_each_with_its_confidence(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    plain = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[1]))
    answer = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[1],
                                                         variants=3))
    assert not answer.ephemeral
    head, *lines = answer.content.split("\n")
    assert head == f"Image descriptions ({len(lines)} different ones, with how likely each is right):", answer.content
    assert 2 <= len(lines) <= 3
    found = [LINE.fullmatch(line) for line in lines]
    assert all(found), lines
    captions = [m.group(2) for m in found if m]
    assert [m.group(1) for m in found if m] == [str(n) for n in range(1, len(lines) + 1)]
    assert captions[0] == plain.content.removeprefix("Image description: "), "the first is the usual description"
    assert len(set(captions)) == len(captions), "different descriptions"
    assert all(0 <= int(m.group(3)) <= 100 for m in found if m)


async def test_variants_out_of_range_never_reach_the_queue(standin: StandIn, bot: BotUnderTest,
                                                           photos: list[FileToPost]) -> None:
    answer = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[1], variants=7))
    assert answer.ephemeral and "Image description" not in answer.content
    assert answer.content == "Sorry, `variants` must be 1 to 3.", answer.content
