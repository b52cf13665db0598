"""Discord failing for a moment (HTTP 503, which discord.py does not retry) loses no answer, and retrying never
answers a message twice, even with two bot processes on the same events."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from bot_story import BotUnderTest, quiet, replies, turn_on
from captionbot.bot.retry import Retry
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost

if TYPE_CHECKING:
    from captionbot.queue.worker import Worker

CHANNEL_MESSAGES = "POST /channels/{channel_id}/messages"
QUICK = Retry(attempts=3, first_delay_s=0.1)


def faults_on(standin: StandIn, route: str) -> int:
    return sum(1 for s in standin.sent if s.kind == "fault" and s.route == route)


async def test_a_503_on_a_channel_reply_is_retried_and_answered_once_by_one_of_two_bots(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], worker: Worker, photos: list[FileToPost]) -> None:
    await make_bot(reply_retry=QUICK).start()
    await make_bot(reply_retry=QUICK).start()  # a second bot process sees the same events
    await turn_on(standin, "alt-text", heatmap=True)
    standin.faults.server_error(CHANNEL_MESSAGES, times=1, status=503)
    posted = await standin.post_message("alt-text", "alice", files=[photos[0]])
    [reply] = await replies(standin, posted)
    assert reply.content.startswith("Image description: ")
    [png] = reply.files
    assert png.data.startswith(b"\x89PNG") and len(png.data) > 1000, "the retried upload carries the whole file"
    assert faults_on(standin, CHANNEL_MESSAGES) == 1
    await quiet(standin)
    assert len(standin.replies_to(posted)) == 1, "never answered twice"


async def test_discord_down_for_good_is_given_up_after_a_few_tries_with_a_log_line(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], worker: Worker, photos: list[FileToPost],
        caplog: pytest.LogCaptureFixture) -> None:
    await make_bot(reply_retry=QUICK).start()
    await turn_on(standin, "alt-text")
    standin.faults.server_error(CHANNEL_MESSAGES, times=100, status=503)
    posted = await standin.post_message("alt-text", "alice", files=[photos[1]])
    await standin.wait_for(lambda _: faults_on(standin, CHANNEL_MESSAGES) >= 3, timeout=20)
    await quiet(standin)
    assert faults_on(standin, CHANNEL_MESSAGES) == 3, "bounded: three tries in all"
    assert f"reply to message {posted.id}: giving up after 3 tries" in caplog.text
    standin.faults.clear()
    await standin.gateway.dispatch_message(posted)  # delivered again: the message was given up on, not retried
    await quiet(standin)
    assert standin.replies_to(posted) == []

