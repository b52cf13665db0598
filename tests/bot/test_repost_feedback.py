"""Edit / 👍 / 👎 on a repost (issue 15, items 6 and 7), end to end: the real bot (discord.py) against the stand-in,
a real redis-server and a real worker. In repost mode the description is the reposted image's alt text: the
buttons are on the repost, Edit changes that alt text (the file is uploaded again: Discord cannot change an
upload's description), and the correction follows the picture like a reply's does.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from bot_story import BotUnderTest, quiet, turn_on
from captionbot.bot.corrections import FeedbackStore
from captionbot.bot.feedback import DOWN_ID, EDIT_ID, MODAL_PREFIX, UP_ID
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.record import Sent
from captionbot.bot.standin.server import FileToPost
from captionbot.bot.standin.world import MANAGE_MESSAGES, MANAGE_WEBHOOKS, Message
from PIL import Image
from redis.asyncio import Redis

from captionbot.settings import Settings

FIX = "A brown dog with a red collar leaps over a fallen log in the woods."  # 14 words: more than "short" keeps
EDIT_ROUTE = "PATCH /webhooks/{app_id}/{token}/messages/{message_id}"


@pytest.fixture
async def store(settings: Settings, redis_url: str) -> AsyncIterator[FeedbackStore]:
    """The feedback records, read straight from Redis as another process would."""
    redis = Redis.from_url(redis_url)
    yield FeedbackStore(redis, settings.redis_keys.jobs)
    await redis.aclose()


def resized(photo: FileToPost, factor: float) -> FileToPost:
    """The same picture as someone else would post it: another size, PNG, another name."""
    img = Image.open(io.BytesIO(photo.data)).convert("RGB")
    buf = io.BytesIO()
    img.resize((round(img.width * factor), round(img.height * factor))).save(buf, "PNG")
    return FileToPost("again.png", buf.getvalue(), "image/png")


def button_ids(message: Message) -> list[str]:
    return [b["custom_id"] for row in message.components for b in row["components"]]


async def repost_mode(standin: StandIn, **options: object) -> None:
    await standin.set_bot_permissions("alt-text", allow=MANAGE_WEBHOOKS | MANAGE_MESSAGES)
    confirmation = await turn_on(standin, "alt-text", mode="repost", **options)
    assert "posted on the image itself" in confirmation.content, confirmation.content


async def reposted(standin: StandIn, poster: str, files: list[FileToPost], content: str = "") -> Message:
    """``poster`` posts into the repost channel; returns the repost once the original is gone."""
    before = len(standin.webhook_posts_in("alt-text"))
    original = await standin.post_message("alt-text", poster, content, files=files)
    await standin.wait_for(lambda _: len(standin.webhook_posts_in("alt-text")) > before
                           and original.id not in standin.world.messages, 30)
    return standin.webhook_posts_in("alt-text")[-1]


async def modal_of(standin: StandIn, who: str, repost: Message) -> Sent:
    state = await standin.press_button("alt-text", who, repost, EDIT_ID)
    await standin.wait_for(lambda sent: any(s.kind == "modal" and s.interaction_id == state.id for s in sent))
    [modal] = [s for s in standin.sent if s.kind == "modal" and s.interaction_id == state.id]
    assert modal.ok, modal.payload
    return modal


async def private_answer(standin: StandIn, state_id: str) -> Sent:
    await standin.wait_for(lambda _: bool(standin.answers_to(state_id)))
    said = standin.answers_to(state_id)[-1]
    assert said.ephemeral, "feedback answers are seen only by the person who pressed"
    return said


async def edit(standin: StandIn, who: str, repost: Message, text: str) -> Sent:
    """``who`` presses Edit on the repost, types ``text`` and submits; returns the private answer."""
    modal = await modal_of(standin, who, repost)
    state = await standin.submit_modal("alt-text", who, modal.payload["custom_id"], {"image:0": text})
    return await private_answer(standin, state.id)


def alt_of(standin: StandIn, repost: Message) -> list[str | None]:
    return [a.description for a in standin.world.messages[repost.id].attachments]


async def test_the_poster_edits_the_reposts_alt_text_and_the_same_picture_gets_it_at_once(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost], store: FeedbackStore) -> None:
    await repost_mode(standin, length="short")
    mine = FileToPost(photos[1].filename, photos[1].data, "image/jpeg", description="My dog on the beach")
    repost = await reposted(standin, "alice", [mine, photos[0]], "two dogs")  # the bot describes the second file
    assert button_ids(repost) == [EDIT_ID, UP_ID, DOWN_ID], "the repost carries the buttons"
    _, model_alt = alt_of(standin, repost)
    assert model_alt and len(model_alt.split()) <= 8, model_alt

    modal = await modal_of(standin, "alice", repost)  # alice: the member the repost was made for
    assert modal.payload["custom_id"] == MODAL_PREFIX + repost.id
    assert "alt text" in modal.payload["title"]
    [row] = modal.payload["components"]  # one box: her own alt text is not the bot's to edit
    assert row["components"][0]["value"] == model_alt, "prefilled with the image's alt text"

    state = await standin.submit_modal("alt-text", "alice", modal.payload["custom_id"], {"image:0": FIX})
    thanks = await private_answer(standin, state.id)
    assert "alt text is updated" in thanks.content
    now = standin.world.messages[repost.id]
    assert alt_of(standin, repost) == ["My dog on the beach", FIX], "that image's alt text, hers kept"
    assert [a.data for a in now.attachments] == [photos[1].data, photos[0].data], "the same files"
    assert now.content == "two dogs" and now.author.name == "alice" and button_ids(now) == [EDIT_ID, UP_ID, DOWN_ID]
    assert [m.id for m in standin.webhook_posts_in("alt-text")] == [repost.id], "edited in place, not re-posted"
    assert [s.status for s in standin.sent if s.kind == "webhook_edit"] == [200]
    assert not [s for s in standin.sent if s.kind == "message"], "no reply anywhere"
    [kept] = await store.corrections(standin.world.guild_id)
    assert (kept.text, kept.model_text, kept.by) == (FIX, model_alt, standin.world.user("alice").id)

    await bot.restart()  # the record and the correction live in Redis, not in the process
    again = await reposted(standin, "bob", [resized(photos[0], 0.5)])
    assert alt_of(standin, again) == [FIX], "a known correction is the repost's alt text at once, not cut short"
    assert button_ids(again) == [EDIT_ID, UP_ID, DOWN_ID]
    modal = await modal_of(standin, "alice", repost)  # a button on a repost made before the restart
    assert modal.payload["components"][0]["components"][0]["value"] == FIX
    other = await reposted(standin, "bob", [resized(photos[2], 0.5)])
    assert alt_of(standin, other) != [FIX]


async def test_on_a_repost_a_stranger_is_refused_a_moderator_may_edit_and_votes_count(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost], store: FeedbackStore) -> None:
    await repost_mode(standin)
    repost = await reposted(standin, "alice", [photos[3]])
    [before] = alt_of(standin, repost)

    state = await standin.press_button("alt-text", "bob", repost, EDIT_ID)
    refusal = await private_answer(standin, state.id)
    assert "Only the person who posted the image" in refusal.content
    assert standin.open_modals("bob") == [], "no edit box for a stranger"

    said = await edit(standin, "mod", repost, FIX)  # Manage Messages
    assert "alt text is updated" in said.content
    assert alt_of(standin, repost) == [FIX]

    for who, button in (("alice", UP_ID), ("bob", DOWN_ID), ("bob", DOWN_ID)):
        state = await standin.press_button("alt-text", who, repost, button)
        await private_answer(standin, state.id)
    assert await store.votes(repost.id) == {"up": 1, "down": 1}
    assert before != FIX


async def test_when_the_alt_text_cannot_be_changed_the_person_is_told_and_nothing_is_kept(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost], store: FeedbackStore) -> None:
    await repost_mode(standin)
    repost = await reposted(standin, "alice", [photos[4]])
    [before] = alt_of(standin, repost)
    standin.faults.server_error(EDIT_ROUTE, times=1, status=403)  # Discord refuses the webhook edit

    said = await edit(standin, "alice", repost, FIX)
    assert "couldn't change the image's alt text" in said.content
    await quiet(standin, 0.3)
    assert repost.id in standin.world.messages, "the repost stays"
    assert alt_of(standin, repost) == [before]
    assert await store.corrections(standin.world.guild_id) == [], "no correction kept for an edit that did not happen"
    said = await edit(standin, "alice", repost, FIX)  # pressing Edit again works
    assert "alt text is updated" in said.content and alt_of(standin, repost) == [FIX]
