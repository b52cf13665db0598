"""Anyone can ask how the service is doing (/captionbot stats) and how to use it (/help)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot_story import BotUnderTest, answered
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost

if TYPE_CHECKING:
    from captionbot.queue.worker import Worker


async def test_stats_show_the_queue_the_latency_and_the_model(standin: StandIn, bot: BotUnderTest, worker: Worker,
                                                             photos: list[FileToPost]) -> None:
    await answered(standin, await standin.slash("general", "alice", "caption", image=photos[0]))
    stats = await answered(standin, await standin.slash("general", "alice", "captionbot stats"))
    assert stats.ephemeral
    lines = stats.content.splitlines()
    assert lines[0] == "Queue: 0 waiting, 0 being captioned"
    assert lines[1].startswith("Median latency: ") and lines[1].endswith(" ms")
    version = worker.captioner.model_version
    assert lines[2] == f"Model: {version}" and lines[3] == "Workers: 1"


async def test_help_explains_the_commands_privately(standin: StandIn, bot: BotUnderTest) -> None:
    help_ = await answered(standin, await standin.slash("general", "bob", "help"))
    assert help_.kind == "interaction_message" and help_.ephemeral
    for command in ("/caption", "Describe image", "/alttext", "/captionbot stats"):
        assert command in help_.content
