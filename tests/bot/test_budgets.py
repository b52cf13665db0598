"""A person waiting on a command comes before automation: automatic alt text and commands spend separate budgets,
and a refusal says which limit (person, channel, server) was hit."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from bot_story import BotUnderTest, answered, quiet, turn_on
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost

if TYPE_CHECKING:
    from captionbot.queue.worker import Worker


async def test_automation_that_used_the_server_budget_does_not_refuse_a_persons_caption(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], worker: Worker, photos: list[FileToPost],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="captionbot.bot.captions")
    await make_bot(guild_limit=60, alt_text_guild_limit=2).start()
    await turn_on(standin, "alt-text")
    posted = [await standin.post_message("alt-text", "bob", files=[p]) for p in photos[:3]]
    await standin.wait_for(lambda _: sum(bool(standin.replies_to(m)) for m in posted) >= 2)
    await quiet(standin)
    [skipped] = [m for m in posted if not standin.replies_to(m)]  # the three are handled concurrently
    assert f"alt text for message {skipped.id} skipped: the server budget for automatic alt text" in caplog.text

    asked = await answered(standin, await standin.slash("alt-text", "alice", "caption", image=photos[3]))
    assert asked.content.startswith("Image description: "), "the server's automation budget is not alice's"


async def test_a_command_over_the_channel_budget_is_told_it_is_the_channel(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], worker: Worker, photos: list[FileToPost]) -> None:
    await make_bot(channel_limit=2).start()
    for who in ("alice", "bob"):
        ok = await answered(standin, await standin.slash("general", who, "caption", image=photos[0]))
        assert ok.content.startswith("Image description: ")
    refused = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[1]))
    assert refused.ephemeral
    assert refused.content == ("This channel is asking a bit too fast: at most 2 images a minute here. "
                               "Please wait a moment.")
    elsewhere = await answered(standin, await standin.slash("gallery", "alice", "caption", image=photos[1]))
    assert elsewhere.content.startswith("Image description: "), "other channels have their own budget"
