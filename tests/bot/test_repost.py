"""Repost mode: the description goes on the image itself, as its alt text, and nothing is ever lost.

A moderator sets ``/alttext on channel:#alt-text mode:repost``; a photo posted there is posted again through the
channel's webhook under the author's name, with the description as the photo's alt text, and the original goes.
"""

from __future__ import annotations

import logging

import pytest
from bot_story import BotUnderTest, answered, quiet, replies, turn_on
from captionbot.bot.services import ATTR, Services
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost
from captionbot.bot.standin.webhooks import SUPPRESS_NOTIFICATIONS
from captionbot.bot.standin.world import MANAGE_MESSAGES, MANAGE_WEBHOOKS, Message

REPOST_ROUTE = "POST /webhooks/{app_id}/{token}"
NEEDED = MANAGE_WEBHOOKS | MANAGE_MESSAGES


def sent_kinds(standin: StandIn, kind: str) -> list[int]:
    return [s.status for s in standin.sent if s.kind == kind]


async def reposts(standin: StandIn, channel: str, n: int = 1) -> list[Message]:
    await standin.wait_for(lambda _: len(standin.webhook_posts_in(channel)) >= n)
    return standin.webhook_posts_in(channel)


async def test_repost_mode_replaces_the_photo_by_the_authors_post_with_the_description_as_alt_text(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="discord")
    await standin.set_bot_permissions("alt-text", allow=NEEDED)
    confirmation = await turn_on(standin, "alt-text", mode="repost")
    assert "posted on the image itself" in confirmation.content, confirmation.content

    described = FileToPost(photos[1].filename, photos[1].data, "image/jpeg", description="My dog on the beach")
    original = await standin.post_message("alt-text", "alice", "look at <@123> this", files=[photos[0], described])
    [repost] = await reposts(standin, "alt-text")
    await standin.wait_for(lambda _: original.id not in standin.world.messages)

    assert repost.author.name == "alice", "posted under the author's display name"
    assert repost.avatar_url and repost.avatar_url.startswith("https://"), "and with the author's avatar"
    assert repost.content == "look at <@123> this", "the author's text is kept"
    assert repost.allowed_mentions == {"parse": []}, "nobody is pinged again"
    assert repost.flags & SUPPRESS_NOTIFICATIONS, "and nobody is notified a second time"
    assert [a.data for a in repost.attachments] == [photos[0].data, photos[1].data], "every file, unchanged"
    alt, theirs = (a.description for a in repost.attachments)
    assert alt and len(alt) <= 1024 and not alt.startswith("Image description"), alt
    assert theirs == "My dog on the beach", "an image that had alt text keeps the author's"
    assert standin.replies_to(original) == [], "no reply: the description is on the image"
    assert [m.id for m in standin.messages_in("alt-text")] == [repost.id]

    second = await standin.post_message("alt-text", "bob", files=[photos[2]])
    await reposts(standin, "alt-text", 2)
    await standin.gateway.dispatch_message(second)  # delivered again: not reposted twice
    await quiet(standin)
    assert len(standin.webhook_posts_in("alt-text")) == 2
    await bot.restart()
    await standin.post_message("alt-text", "alice", files=[photos[3]])
    await reposts(standin, "alt-text", 3)
    assert sent_kinds(standin, "webhook_create") == [200], "one webhook, made once and reused, after a restart too"
    [hook] = standin.rest.webhooks.hooks.values()
    assert "/webhooks/" in caplog.text and hook.token not in caplog.text, "the webhook's token is never logged"


async def test_without_the_permissions_the_moderator_is_told_and_replies_are_used(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    confirmation = await turn_on(standin, "alt-text", mode="repost")
    assert confirmation.ephemeral
    assert "**Manage Webhooks** and **Manage Messages**" in confirmation.content, confirmation.content
    assert "posted as a reply under the image" in confirmation.content
    status = await answered(standin, await standin.slash("alt-text", "bob", "alttext status"))
    assert "posted as a reply under the image" in status.content

    original = await standin.post_message("alt-text", "alice", files=[photos[0]])
    [reply] = await replies(standin, original)
    assert reply.content.startswith("Image description: ")
    assert original.id in standin.world.messages
    assert standin.webhook_posts_in("alt-text") == [] and sent_kinds(standin, "webhook_create") == []


async def test_permissions_taken_away_later_mean_replies_and_the_original_stays(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="captionbot.bot.repost")
    await standin.set_bot_permissions("alt-text", allow=NEEDED)
    confirmation = await turn_on(standin, "alt-text", mode="repost")
    assert "posted on the image itself" in confirmation.content
    await standin.set_bot_permissions("alt-text", allow=MANAGE_WEBHOOKS)  # a moderator removes Manage Messages

    original = await standin.post_message("alt-text", "alice", files=[photos[0]])
    [reply] = await replies(standin, original)
    assert reply.content.startswith("Image description: ")
    assert original.id in standin.world.messages and sent_kinds(standin, "webhook_message") == []
    assert any("I lack Manage Messages there; replying to message " + original.id in r.getMessage()
               for r in caplog.records), "a log line says why"


async def test_a_failed_webhook_post_leaves_the_original_in_place(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    await standin.set_bot_permissions("alt-text", allow=NEEDED)
    await turn_on(standin, "alt-text", mode="repost")
    standin.faults.server_error(REPOST_ROUTE, times=1, status=413)  # Discord refuses the upload

    original = await standin.post_message("alt-text", "alice", "my photo", files=[photos[0]])
    [reply] = await replies(standin, original)
    assert reply.content.startswith("Image description: "), "the description still comes, as a reply"
    assert [s.status for s in standin.sent if s.route == REPOST_ROUTE and s.kind == "fault"] == [413]
    assert original.id in standin.world.messages, "the original is not deleted"
    assert sent_kinds(standin, "delete_message") == []
    assert standin.webhook_posts_in("alt-text") == []


async def test_when_the_original_cannot_be_deleted_the_repost_is_taken_back(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    await standin.set_bot_permissions("alt-text", allow=NEEDED)
    await turn_on(standin, "alt-text", mode="repost")
    standin.world.channel("alt-text").bot_allowed = MANAGE_WEBHOOKS  # Discord refuses the delete; the bot's cache
    # still says it may (as when a permission is changed while a repost is under way)

    original = await standin.post_message("alt-text", "alice", files=[photos[0]])
    [reply] = await replies(standin, original)
    assert reply.content.startswith("Image description: ")
    assert sent_kinds(standin, "delete_message") == [403]
    assert sent_kinds(standin, "webhook_delete") == [204], "the repost is taken back: the image is not shown twice"
    assert [m.id for m in standin.messages_in("alt-text") if not m.author.bot] == [original.id]
    assert standin.webhook_posts_in("alt-text") == []


async def test_a_reposted_images_alt_text_can_be_changed_later(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    """``Reposter.edit_alt_text``, which the Edit button (issue 15, item 7) calls."""
    await standin.set_bot_permissions("alt-text", allow=NEEDED)
    await turn_on(standin, "alt-text", mode="repost")
    described = FileToPost(photos[1].filename, photos[1].data, "image/jpeg", description="Mine")
    await standin.post_message("alt-text", "alice", "two", files=[photos[0], described])
    [repost] = await reposts(standin, "alt-text")

    assert bot.bot is not None
    services: Services = getattr(bot.bot, ATTR)
    channel = bot.bot.get_channel(int(repost.channel_id))
    assert channel is not None and hasattr(channel, "fetch_message")
    message = await channel.fetch_message(int(repost.id))
    edited = await services.reposter.edit_alt_text(message, {0: "A brown dog runs through tall grass."})

    stored = standin.world.messages[repost.id]
    assert edited.id == int(repost.id), "the same message, in the same place"
    assert [a.description for a in stored.attachments] == ["A brown dog runs through tall grass.", "Mine"]
    assert [a.data for a in stored.attachments] == [photos[0].data, photos[1].data]
    assert stored.content == "two" and stored.author.name == "alice"


async def test_a_member_whose_name_discord_refuses_for_webhooks_is_still_reposted_under_it(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    await standin.set_bot_permissions("alt-text", allow=NEEDED)
    await turn_on(standin, "alt-text", mode="repost")
    standin.world.user("bob").name = "Discord Dan"  # Discord answers 400 to a webhook username with "discord"

    original = await standin.post_message("alt-text", "bob", files=[photos[0]])
    [repost] = await reposts(standin, "alt-text")
    assert repost.author.name == "Disc\u043erd Dan", "the same name to the eye (a Cyrillic o)"
    await standin.wait_for(lambda _: original.id not in standin.world.messages)
    assert standin.replies_to(original) == []


async def test_photos_posted_at_once_make_one_webhook(standin: StandIn, bot: BotUnderTest,
                                                      photos: list[FileToPost]) -> None:
    """(discord.py sends requests on one route one at a time to a server that sends no rate-limit headers, as the
    stand-in does, so this cannot show the per-channel lock in ``Reposter.webhook_for`` at work; it shows the
    outcome.)"""
    await standin.set_bot_permissions("gallery", allow=NEEDED)
    await turn_on(standin, "gallery", mode="repost")
    for who, photo in zip(("alice", "bob", "alice"), photos[:3], strict=True):
        await standin.post_message("gallery", who, files=[photo])
    await reposts(standin, "gallery", 3)
    assert sent_kinds(standin, "webhook_create") == [200]
    assert len(standin.rest.webhooks.in_channel(standin.world.channel("gallery").id)) == 1
