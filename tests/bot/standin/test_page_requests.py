"""The local page's requests: what a person gets back for a bad one (a sentence the page shows, and a log line),
and how a modal the bot opens becomes the page's form."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.page_buttons import modal_of
from captionbot.bot.standin.record import Sent
from captionbot.bot.standin.world import Message, snowflake


async def post_form(http: aiohttp.ClientSession, url: str, **fields: str) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    for k, v in fields.items():
        if k == "file":
            form.add_field("file", b"\x89PNG fake", filename=v, content_type="image/png")
        else:
            form.add_field(k, v)
    async with http.post(url, data=form) as resp:
        return resp.status, await resp.json()


async def test_bad_posts_and_clicks_are_refused_with_a_sentence_and_a_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="captionbot.bot.standin")
    standin = StandIn()
    await standin.start()
    try:
        channel = standin.world.channel("general")
        url = f"{standin.base_url}/_standin/channels/{channel.id}/messages"
        async with aiohttp.ClientSession() as http:
            no_image = await post_form(http, url, user="alice", mode="caption")
            assert no_image == (400, {"error": "Choose an image first."})
            status, body = await post_form(http, url, user="alice", mode="caption", beam="9", file="cat.png")
            assert status == 400 and body["error"] == "beam must be a whole number from 1 to 8."
            status, body = await post_form(http, url, user="alice", mode="caption", variants="two", file="cat.png")
            assert status == 400 and body["error"] == "variants must be a whole number from 1 to 3."
            assert await post_form(http, url, user="alice", mode="find", words="  ") == (
                400, {"error": "Write what to look for first."})
            assert await post_form(http, url, user="alice", mode="find", words="dog " * 51) == (
                400, {"error": "words must be at most 200 characters."})
            assert await post_form(http, url, user="captionbot", mode="post", content="hi") == (
                400, {"error": "Unknown member."})
            assert (await post_form(http, f"{standin.base_url}/_standin/channels/123/messages", user="alice",
                                    content="hi"))[0] == 404
            assert not standin.rest.interactions and not standin.world.messages, "nothing reached the bot"

            message = Message(snowflake(), channel.id, standin.world.guild_id, standin.world.bot_user, content="x",
                              components=[{"type": 1, "components": [
                                  {"type": 2, "style": 2, "label": "Edit", "custom_id": "edit"}]}])
            standin.world.messages[message.id] = message
            press = f"{standin.base_url}/_standin/messages/{message.id}/press"
            async with http.post(press, json={"user": "alice", "custom_id": "delete-everything"}) as resp:
                assert resp.status == 400 and (await resp.json())["error"] == "That message has no such button."
            async with http.post(press, data=b"not json") as resp:
                assert resp.status == 400 and (await resp.json())["error"] == "The request body must be JSON."
            async with http.post(f"{standin.base_url}/_standin/channels/{channel.id}/modals",
                                 json={"user": "alice", "custom_id": "edit", "values": ["a list"]}) as resp:
                assert resp.status == 400 and "values must map" in (await resp.json())["error"]
            async with http.get(standin.base_url + "/_standin/state") as resp:
                assert resp.status == 200, "the stand-in keeps serving"
    finally:
        await standin.stop()
    refused = [r.getMessage() for r in caplog.records if "local page: refused" in r.getMessage()]
    assert len(refused) == 10 and "no such button" in refused[7]


def test_a_modal_the_bot_opens_becomes_the_pages_form_with_its_inputs_labels_and_values() -> None:
    rows = {"type": 9, "data": {"custom_id": "captionbot:edit:1", "title": "Edit the description", "components": [
        {"type": 1, "components": [{"type": 4, "custom_id": "text", "label": "Description", "style": 2,
                                    "value": "A dog runs.", "max_length": 1024}]}]}}
    labelled = {"type": 9, "data": {"custom_id": "m", "title": "T", "components": [
        {"type": 18, "label": "Why?", "component": {"type": 4, "custom_id": "why", "style": 1, "required": False}}]}}
    modal = modal_of(Sent("interaction_other", "POST callback", 200, rows))
    assert modal is not None and modal["custom_id"] == "captionbot:edit:1"
    assert modal["inputs"] == [{"custom_id": "text", "label": "Description", "paragraph": True, "value": "A dog runs.",
                    "placeholder": "", "required": True, "min_length": None, "max_length": 1024}]
    modal = modal_of(Sent("interaction_other", "POST callback", 200, labelled))
    assert modal is not None and modal["title"] == "T"
    assert [(i["label"], i["required"]) for i in modal["inputs"]] == [("Why?", False)]
    assert modal_of(Sent("interaction_message", "POST callback", 200, {"type": 4, "data": {}})) is None
