"""Mentioning the bot: in reply to a message with images it describes them; otherwise a short help. Never a
traceback in the log (a mention is not a prefix command)."""

from __future__ import annotations

import logging

import pytest
from bot_story import BotUnderTest, quiet, replies, turn_on
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert "CommandNotFound" not in caplog.text and "Traceback" not in caplog.text


async def test_a_bare_mention_gets_a_short_help_once(standin: StandIn, bot: BotUnderTest,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    asked = await standin.post_message("general", "alice", f"{standin.mention} hello?")
    [reply] = await replies(standin, asked)
    assert "/caption" in reply.content and "Describe image" in reply.content
    assert reply.message.allowed_mentions == {"parse": [], "replied_user": False}
    await standin.gateway.dispatch_message(asked)  # delivered again: not answered again
    await quiet(standin)
    assert len(standin.replies_to(asked)) == 1
    no_errors_logged(caplog)


async def test_a_mention_in_reply_to_a_photo_describes_it(standin: StandIn, bot: BotUnderTest,
                                                          photos: list[FileToPost],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    photo = await standin.post_message("general", "bob", "our trip", files=photos[:2])
    asked = await standin.post_message("general", "alice", f"{standin.mention} what is this?", reply_to=photo)
    [reply] = await replies(standin, asked)
    lines = reply.content.splitlines()
    assert lines[0] == "Image descriptions:" and [line[:3] for line in lines[1:]] == ["1. ", "2. "]
    assert standin.replies_to(photo) == [], "alt text is off in #general: only the mention is answered"
    no_errors_logged(caplog)


async def test_a_photo_posted_with_a_mention_in_an_alt_text_channel_is_described_once(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost], caplog: pytest.LogCaptureFixture) -> None:
    await turn_on(standin, "alt-text")
    posted = await standin.post_message("alt-text", "alice", f"{standin.mention} please", files=[photos[3]])
    [reply] = await replies(standin, posted)
    assert reply.content.startswith("Image description: ")
    await quiet(standin)
    assert len(standin.replies_to(posted)) == 1
    no_errors_logged(caplog)
