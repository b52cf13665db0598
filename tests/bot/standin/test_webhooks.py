"""The stand-in's channel webhooks answer as Discord's API does (what repost mode relies on), over plain HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost
from captionbot.bot.standin.world import MANAGE_MESSAGES, MANAGE_WEBHOOKS


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    s = StandIn()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def http(standin: StandIn) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=standin.base_url) as session:
        yield session


def bot(standin: StandIn) -> dict[str, str]:
    return {"Authorization": f"Bot {standin.token}"}


async def create(http: aiohttp.ClientSession, standin: StandIn, name: str = "captionbot") -> tuple[int, Any]:
    cid = standin.world.channel("alt-text").id
    async with http.post(f"/api/v10/channels/{cid}/webhooks", json={"name": name}, headers=bot(standin)) as resp:
        return resp.status, await resp.json()


def upload(payload: dict[str, Any], data: bytes = b"\x89PNG fake") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("payload_json", json.dumps(payload), content_type="application/json")
    form.add_field("files[0]", data, filename="dog.png", content_type="image/png")
    return form


async def test_creating_and_listing_webhooks_needs_manage_webhooks(standin: StandIn,
                                                                   http: aiohttp.ClientSession) -> None:
    status, body = await create(http, standin)
    assert (status, body["code"]) == (403, 50013)
    standin.world.channel("alt-text").bot_allowed = MANAGE_WEBHOOKS
    status, hook = await create(http, standin)
    assert status == 200 and hook["token"] and hook["type"] == 1 and hook["user"]["id"] == standin.world.bot_user.id
    status, body = await create(http, standin, "my Discord hook")
    assert (status, body["code"]) == (400, 50035), "Discord refuses names with 'discord' or 'clyde'"
    async with http.get(f"/api/v10/channels/{hook['channel_id']}/webhooks", headers=bot(standin)) as resp:
        assert [h["id"] for h in await resp.json()] == [hook["id"]]


async def test_executing_a_webhook_posts_files_with_their_descriptions_under_the_given_name(
        standin: StandIn, http: aiohttp.ClientSession) -> None:
    standin.world.channel("alt-text").bot_allowed = MANAGE_WEBHOOKS
    _, hook = await create(http, standin)
    url = f"/api/v10/webhooks/{hook['id']}/{hook['token']}"
    payload = {"content": "hi", "username": "alice", "avatar_url": "https://example.org/a.png",
               "attachments": [{"id": 0, "filename": "dog.png", "description": "A dog."}]}
    async with http.post(url + "?wait=true", data=upload(payload)) as resp:
        assert resp.status == 200
        message = await resp.json()
    assert message["webhook_id"] == hook["id"] and message["author"]["username"] == "alice"
    assert message["attachments"][0]["description"] == "A dog." and "member" not in message
    async with http.post(url, data=upload(payload)) as resp:
        assert resp.status == 204, "without wait=true Discord answers 204 and no message"

    async with http.post(url + "x", json={"content": "hi"}) as resp:
        assert (resp.status, (await resp.json())["code"]) == (401, 50027)
    async with http.post(url + "?wait=true", json={}) as resp:
        assert (resp.status, (await resp.json())["code"]) == (400, 50006)
    too_long = {**payload, "attachments": [{"id": 0, "description": "x" * 1025}]}
    async with http.post(url + "?wait=true", data=upload(too_long)) as resp:
        assert (resp.status, (await resp.json())["code"]) == (400, 50035)
    async with http.post(url + "?wait=true", json={"content": "hi", "username": "Clyde"}) as resp:
        assert resp.status == 400
    assert len(standin.webhook_posts_in("alt-text")) == 2


async def test_deleting_someone_elses_message_needs_manage_messages(standin: StandIn,
                                                                    http: aiohttp.ClientSession) -> None:
    posted = await standin.post_message("alt-text", "alice", files=[FileToPost("a.png", b"x", "image/png")])
    url = f"/api/v10/channels/{posted.channel_id}/messages/{posted.id}"
    async with http.delete(url, headers=bot(standin)) as resp:
        assert (resp.status, (await resp.json())["code"]) == (403, 50013)
    standin.world.channel("alt-text").bot_allowed = MANAGE_MESSAGES
    async with http.delete(url, headers=bot(standin)) as resp:
        assert resp.status == 204
    assert posted.id not in standin.world.messages


BUTTONS = [{"type": 1, "components": [{"type": 2, "style": 2, "label": "Edit", "custom_id": "edit"}]}]
LINK = [{"type": 1, "components": [{"type": 2, "style": 5, "label": "Help", "url": "https://example.org/help"}]}]


async def test_buttons_on_a_webhook_post_need_with_components_and_only_an_application_owned_webhook_may_send_them(
        standin: StandIn, http: aiohttp.ClientSession) -> None:
    """As Discord: ``components`` are read only with ``?with_components=true``; interactive ones only from a webhook
    an application owns (the bot's); a member's webhook may send link buttons; a press reaches the bot."""
    standin.world.channel("alt-text").bot_allowed = MANAGE_WEBHOOKS
    _, hook = await create(http, standin)
    assert hook["application_id"] == standin.world.application_id
    url = f"/api/v10/webhooks/{hook['id']}/{hook['token']}?wait=true"
    async with http.post(url, json={"content": "no flag", "components": BUTTONS}) as resp:
        assert resp.status == 200 and (await resp.json())["components"] == [], "ignored without with_components"
    async with http.post(url + "&with_components=true", json={"content": "mine", "components": BUTTONS}) as resp:
        assert resp.status == 200
        posted = await resp.json()
    assert posted["components"] == BUTTONS
    bad = [{"type": 1, "components": [BUTTONS[0]["components"][0]] * 2}]  # the same custom_id twice
    async with http.post(url + "&with_components=true", json={"content": "x", "components": bad}) as resp:
        assert (resp.status, (await resp.json())["code"]) == (400, 50035)

    theirs = standin.rest.webhooks.add_members_webhook(hook["channel_id"], "Feeds", standin.world.user("mod"))
    other = f"/api/v10/webhooks/{theirs.id}/{theirs.token}?wait=true&with_components=1"
    async with http.post(other, json={"content": "feed", "components": BUTTONS}) as resp:
        body = await resp.json()
        assert (resp.status, body["code"]) == (400, 50035), "interactive components need an application's webhook"
        assert "application" in json.dumps(body["errors"])
    async with http.post(other, json={"content": "feed", "components": LINK}) as resp:
        assert resp.status == 200 and (await resp.json())["components"] == LINK

    edit = f"/api/v10/webhooks/{hook['id']}/{hook['token']}/messages/{posted['id']}"
    async with http.patch(edit, json={"content": "edited"}) as resp:
        assert resp.status == 200 and (await resp.json())["components"] == BUTTONS, "an edit without them keeps them"
    async with http.patch(edit + "?with_components=true", json={"components": []}) as resp:
        assert resp.status == 200 and (await resp.json())["components"] == []
    async with http.patch(edit + "?with_components=true", json={"components": BUTTONS}) as resp:
        assert resp.status == 200
    state = await standin.press_button("alt-text", "alice", standin.world.messages[posted["id"]], "edit")
    assert state.message_id == posted["id"], "a press on the webhook's message is an interaction for the bot"


async def test_the_page_draws_a_webhook_post_under_the_name_and_avatar_it_was_posted_with(
        standin: StandIn, http: aiohttp.ClientSession) -> None:
    standin.world.channel("alt-text").bot_allowed = MANAGE_WEBHOOKS
    _, hook = await create(http, standin)
    payload = {"content": "hi", "username": "alice", "avatar_url": "https://example.org/alice.png"}
    async with http.post(f"/api/v10/webhooks/{hook['id']}/{hook['token']}?wait=true", json=payload) as resp:
        assert resp.status == 200
    async with http.get(f"/_standin/channels/{hook['channel_id']}/messages") as resp:
        [drawn] = await resp.json()
    assert (drawn["author"], drawn["avatar"], drawn["webhook"]) == ("alice", "https://example.org/alice.png", True)
