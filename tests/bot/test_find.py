"""``/find`` end to end: real discord.py against the stand-in, real Redis, a real worker. What the bot posts is
found by its words, as jump links, only from channels the asker can see; deleted messages and wiped servers are
gone from it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot_story import BotUnderTest, answered, replies, turn_on
from captionbot.bot.find_index import terms
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost

if TYPE_CHECKING:
    from captionbot.queue.worker import Worker

LINK = re.compile(r"https://discord\.com/channels/(\d+)/(\d+)/(\d+)")


def links(content: str) -> list[tuple[str, str, str]]:
    return LINK.findall(content)


def query_for(description: str) -> str:
    """Words of a description to search by (the bot's own words, as someone remembering the photo would)."""
    return " ".join(dict.fromkeys(terms(description.removeprefix("Image description: ").split("\n")[0])))


async def find(standin: StandIn, user: str, words: str, channel: str = "general") -> str:
    answer = await answered(standin, await standin.slash(channel, user, "find", words=words))
    assert answer.ephemeral, "search results are shown only to the asker"
    return answer.content


async def test_find_lists_described_images_from_channels_the_asker_can_see_and_forgets_deleted_ones(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], worker: Worker, photos: list[FileToPost]) -> None:
    world = standin.world
    world.channel("gallery").hidden_from.add(world.user("alice").id)  # a channel alice cannot see
    await make_bot().start()
    await turn_on(standin, "alt-text")
    await turn_on(standin, "gallery")
    seen = await standin.post_message("alt-text", "bob", files=[photos[0]])
    hidden = await standin.post_message("gallery", "bob", files=[photos[0]])  # the same photo: the same words
    [seen_reply] = await replies(standin, seen)
    [hidden_reply] = await replies(standin, hidden)
    words = query_for(seen_reply.content)
    assert query_for(hidden_reply.content) == words

    for _ in range(20):  # the bot indexes right after its reply is posted: give it a moment
        for_bob = await find(standin, "bob", words)
        if len(links(for_bob)) >= 2:
            break
        await asyncio.sleep(0.1)
    assert for_bob.startswith("Images matching **")
    assert [m for _, _, m in links(for_bob)][:2] == [hidden.id, seen.id], "both found; equal matches newest first"
    assert all(g == world.guild_id for g, _, _ in links(for_bob))
    assert seen_reply.content.removeprefix("Image description: ").split("\n")[0][:40] in for_bob

    for_alice = await find(standin, "alice", words)
    assert hidden.id not in for_alice and world.channel("gallery").id not in for_alice, "no hidden channel"
    assert links(for_alice)[0][2] == seen.id

    await standin.delete_message(seen)
    for _ in range(20):  # MESSAGE_DELETE reaches the bot over the gateway: give it a moment
        gone = await find(standin, "alice", words)
        if seen.id not in gone:
            break
        await asyncio.sleep(0.1)
    assert seen.id not in gone and not links(gone), "a deleted message leaves the index"
    assert "No image described here matches" in gone


async def test_caption_answers_are_found_and_a_server_can_turn_indexing_off_and_wipe_it(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    answer = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[2]))
    assert answer.message is not None
    words = query_for(answer.content)
    for _ in range(20):  # the bot indexes right after its answer is posted: give it a moment
        found = await find(standin, "bob", words)
        if links(found):
            break
        await asyncio.sleep(0.1)
    assert (standin.world.channel("general").id, answer.message.id) in [(c, m) for _, c, m in links(found)]

    refused = await answered(standin, await standin.slash("general", "alice", "findindex off"))
    assert refused.ephemeral and "Manage Server" in refused.content
    assert links(await find(standin, "bob", words)), "a member cannot wipe it"

    done = await answered(standin, await standin.slash("general", "mod", "findindex off"))
    assert done.ephemeral and "index is deleted (1 description(s))" in done.content
    off = await find(standin, "bob", words)
    assert "turned off in this server" in off and not links(off)
    await answered(standin, await standin.slash("general", "alice", "caption", image=photos[3]))
    status = await answered(standin, await standin.slash("general", "bob", "findindex status"))
    assert "**off**" in status.content and "0 described message(s)" in status.content, "nothing indexed while off"

    await answered(standin, await standin.slash("general", "mod", "findindex on"))
    again = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[2]))
    assert again.message is not None
    assert [m for _, _, m in links(await find(standin, "bob", words))] == [again.message.id], "old one stays wiped"


async def test_images_of_members_who_opted_out_are_described_on_request_but_not_indexed(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    await answered(standin, await standin.slash("general", "alice", "alttext optout"))
    theirs = await standin.post_message("general", "alice", files=[photos[4]])
    described = await answered(standin, await standin.context_menu("general", "bob", "Describe image", theirs))
    assert described.content.startswith("Image description: ")
    mine = await standin.post_message("general", "bob", files=[photos[4]])
    also = await answered(standin, await standin.context_menu("general", "alice", "Describe image", mine))
    assert query_for(also.content) == query_for(described.content)

    for _ in range(20):  # the bot indexes right after its answer is posted: give it a moment
        found = await find(standin, "bob", query_for(described.content))
        if links(found):
            break
        await asyncio.sleep(0.1)
    assert [m for _, _, m in links(found)] == [mine.id], "only the image of the member who did not opt out"


async def test_an_image_reposted_with_its_alt_text_is_found_by_a_link_to_the_repost(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    """Repost mode: the description lives as the reposted image's alt text, and /find links to the repost (the
    original is gone); deleting the repost takes it out of the index."""
    from captionbot.bot.standin.world import MANAGE_MESSAGES, MANAGE_WEBHOOKS

    await standin.set_bot_permissions("alt-text", allow=MANAGE_WEBHOOKS | MANAGE_MESSAGES)
    await turn_on(standin, "alt-text", mode="repost")
    original = await standin.post_message("alt-text", "alice", files=[photos[0]])
    await standin.wait_for(lambda _: len(standin.webhook_posts_in("alt-text")) >= 1)
    [repost] = standin.webhook_posts_in("alt-text")
    alt = repost.attachments[0].description or ""
    words = query_for(alt)

    for _ in range(20):  # indexed right after the repost is up
        found = await find(standin, "bob", words)
        if links(found):
            break
        await asyncio.sleep(0.1)
    assert [m for _, _, m in links(found)] == [repost.id], found
    assert original.id not in found

    await standin.delete_message(repost)
    for _ in range(20):
        gone = await find(standin, "bob", words)
        if not links(gone):
            break
        await asyncio.sleep(0.1)
    assert not links(gone), "a deleted repost leaves the index"
