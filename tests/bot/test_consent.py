"""Less noise, and consent: a member can keep automatic alt text off their images, and a description goes when
the message it describes is deleted."""

from __future__ import annotations

from bot_story import BotUnderTest, answered, quiet, replies, turn_on
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost


async def test_a_member_who_opts_out_is_not_described_until_they_opt_back_in(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    await turn_on(standin, "alt-text")
    done = await answered(standin, await standin.slash("alt-text", "alice", "alttext optout"))
    assert done.ephemeral and "leave the images you post in this server alone" in done.content

    hers = await standin.post_message("alt-text", "alice", files=[photos[0]])
    his = await standin.post_message("alt-text", "bob", files=[photos[1]])
    await replies(standin, his)
    await quiet(standin)
    assert standin.replies_to(hers) == [], "her images are left alone"
    asked = await answered(standin, await standin.slash("alt-text", "alice", "caption", image=photos[0]))
    assert asked.content.startswith("Image description: "), "she can still ask herself"

    await bot.restart()  # the choice is kept in Redis
    later = await standin.post_message("alt-text", "alice", files=[photos[2]])
    await quiet(standin)
    assert standin.replies_to(later) == []
    await answered(standin, await standin.slash("alt-text", "alice", "alttext optin"))
    again = await standin.post_message("alt-text", "alice", files=[photos[3]])
    [reply] = await replies(standin, again)
    assert reply.content.startswith("Image description: ")


async def test_the_description_goes_when_the_described_message_is_deleted(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    await turn_on(standin, "alt-text")
    posted = await standin.post_message("alt-text", "alice", files=[photos[4]])
    kept = await standin.post_message("alt-text", "bob", files=[photos[5]])
    [reply] = await replies(standin, posted)
    [other] = await replies(standin, kept)
    assert reply.message is not None and other.message is not None

    await standin.delete_message(posted)
    deleted = await standin.wait_for(lambda sent: any(s.kind == "delete_message" for s in sent))
    assert [(s.status, s.payload["id"]) for s in deleted if s.kind == "delete_message"] == [(204, reply.message.id)]
    assert reply.message.id not in standin.world.messages
    assert other.message.id in standin.world.messages, "other descriptions stay"


async def test_each_channel_chooses_how_long_its_descriptions_are(standin: StandIn, bot: BotUnderTest,
                                                                 photos: list[FileToPost]) -> None:
    from captionbot.bot.replies import short

    await turn_on(standin, "gallery", length="model")
    confirmation = await turn_on(standin, "alt-text", length="short")
    assert "descriptions short (a few words)" in confirmation.content

    full = await standin.post_message("gallery", "alice", files=[photos[6]])
    brief = await standin.post_message("alt-text", "alice", files=[photos[6]])
    [as_written] = await replies(standin, full)
    [cut] = await replies(standin, brief)
    written = as_written.content.removeprefix("Image description: ")
    assert cut.content == f"Image description: {short(written)}"
    assert len(cut.content.split()) <= 2 + 8
    status = await answered(standin, await standin.slash("gallery", "bob", "alttext status"))
    assert "descriptions as the model writes them" in status.content
