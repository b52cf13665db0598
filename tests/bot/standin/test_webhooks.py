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
