"""Moderators switch automatic alt text on; people post photos; the bot describes them, once, in that channel."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from bot_story import BotUnderTest, answered, quiet, replies, turn_on
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost
from PIL import Image

if TYPE_CHECKING:
    from captionbot.queue.worker import Worker


async def test_a_member_cannot_switch_alt_text_on_and_nothing_changes(standin: StandIn, bot: BotUnderTest,
                                                                      photos: list[FileToPost]) -> None:
    refusal = await answered(standin, await standin.slash("general", "alice", "alttext on"))
    assert refusal.ephemeral, "the refusal is shown only to the member who asked"
    assert "Manage Server" in refusal.content and refusal.content.startswith("Sorry")

    posted = await standin.post_message("general", "alice", files=[photos[0]])
    await quiet(standin)
    assert standin.replies_to(posted) == []


async def test_moderator_turns_it_on_for_a_channel_and_a_photo_there_gets_one_description(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    confirmation = await turn_on(standin, "alt-text")
    assert confirmation.ephemeral and "**on**" in confirmation.content

    posted = await standin.post_message("alt-text", "alice", "look at this", files=[photos[0]])
    [reply] = await replies(standin, posted)
    assert reply.content.startswith("Image description: ") and len(reply.content) > len("Image description: ") + 3
    assert reply.message.allowed_mentions == {"parse": [], "replied_user": False}, "replies never mention anyone"

    elsewhere = await standin.post_message("general", "alice", files=[photos[1]])
    await quiet(standin)
    assert standin.replies_to(elsewhere) == [], "channels where it is off get no reply"
    assert len(standin.replies_to(posted)) == 1


async def test_the_setting_survives_a_bot_restart(standin: StandIn, bot: BotUnderTest,
                                                  photos: list[FileToPost]) -> None:
    await turn_on(standin, "gallery")
    await bot.restart()
    posted = await standin.post_message("gallery", "bob", files=[photos[2]])
    [reply] = await replies(standin, posted)
    assert reply.content.startswith("Image description: ")


async def test_a_channel_keeper_may_switch_one_channel_but_not_the_server(standin: StandIn, bot: BotUnderTest) -> None:
    whole_server = await answered(standin, await standin.slash("general", "keeper", "alttext on"))
    assert whole_server.ephemeral and "Manage Server" in whole_server.content
    one_channel = await answered(standin, await standin.slash(
        "general", "keeper", "alttext on", channel=standin.world.channel("gallery")))
    assert "**on**" in one_channel.content
    status = await answered(standin, await standin.slash("gallery", "bob", "alttext status"))
    assert "**on** (set for this channel)" in status.content


async def test_images_that_already_have_alt_text_are_left_alone_unless_asked(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    await turn_on(standin, "alt-text")
    described = FileToPost(photos[3].filename, photos[3].data, "image/jpeg", description="My dog on the beach")
    posted = await standin.post_message("alt-text", "alice", files=[described])
    await quiet(standin)
    assert standin.replies_to(posted) == []

    await turn_on(standin, "alt-text", all_images=True)
    posted = await standin.post_message("alt-text", "alice", files=[described])
    assert len(await replies(standin, posted)) == 1


async def test_the_bot_never_answers_bots(standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    await turn_on(standin, "alt-text")
    posted = await standin.post_message("alt-text", "otherbot", files=[photos[4]])
    await quiet(standin)
    assert standin.replies_to(posted) == []
    # ... including itself: its own replies come back over the gateway and are not captioned again.
    human = await standin.post_message("alt-text", "alice", files=[photos[5]])
    await replies(standin, human)
    await quiet(standin)
    assert [s.kind for s in standin.sent if s.kind == "message"] == ["message"]


async def test_a_message_delivered_twice_is_described_once(standin: StandIn, bot: BotUnderTest,
                                                           photos: list[FileToPost]) -> None:
    await turn_on(standin, "alt-text")
    posted = await standin.post_message("alt-text", "alice", files=[photos[6]])
    await replies(standin, posted)
    await standin.gateway.dispatch_message(posted)  # Discord may deliver an event again (e.g. around a RESUME)
    await bot.restart()
    await standin.gateway.dispatch_message(posted)
    await quiet(standin)
    assert len(standin.replies_to(posted)) == 1


def rocket_launch() -> FileToPost:
    """A real photo the model is unsure of (scikit-image's rocket launch: confidence 0.06, "Possibly an oil rig.")."""
    data = pytest.importorskip("skimage.data", reason="scikit-image gives the real sample photo")
    buf = io.BytesIO()
    Image.fromarray(data.rocket()).convert("RGB").save(buf, "JPEG", quality=92)
    return FileToPost("rocket.jpg", buf.getvalue(), "image/jpeg")


async def test_a_channel_that_skips_uncertain_descriptions_posts_only_those_the_model_is_sure_of(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    confirmation = await turn_on(standin, "alt-text", skip_uncertain=True)
    assert "not posted" in confirmation.content, confirmation.content
    await turn_on(standin, "gallery")

    unsure_here = await standin.post_message("alt-text", "alice", files=[rocket_launch()])
    unsure_there = await standin.post_message("gallery", "alice", files=[rocket_launch()])
    [hedged] = await replies(standin, unsure_there)
    assert hedged.content.startswith("Image description: Possibly"), hedged.content
    await quiet(standin)
    assert standin.replies_to(unsure_here) == [], "an uncertain description is not posted where the channel says so"

    sure = await standin.post_message("alt-text", "bob", files=[photos[0]])
    [reply] = await replies(standin, sure)
    assert reply.content.startswith("Image description: ") and "Possibly" not in reply.content


async def test_without_the_message_content_intent_turning_it_on_says_why_it_cannot_work(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], worker: Worker) -> None:
    await make_bot().start(alt_text=False)  # `captionbot bot --no-alt-text`
    answer = await turn_on(standin, "alt-text")
    assert answer.ephemeral
    assert "Message Content" in answer.content and "can't work" in answer.content
    assert "**on**" not in answer.content, "it must not claim alt text is on when it cannot see images"
    status = await answered(standin, await standin.slash("alt-text", "mod", "alttext status"))
    assert "**off**" in status.content and "Message Content" in status.content
