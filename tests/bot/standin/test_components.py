"""The stand-in's message components follow Discord's rules: what a bot may send (400 / 50035 otherwise), which
interaction callback types fit which interaction, and what a user can press or submit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from captionbot.bot.standin import NotPossible, StandIn
from captionbot.bot.standin.rest import InteractionState

API = "/api/v10"


def button(custom_id: str, label: str = "Press") -> dict[str, Any]:
    return {"type": 2, "style": 2, "custom_id": custom_id, "label": label}


def modal(custom_id: str = "m", title: str = "Edit", max_length: int = 20, value: str = "old") -> dict[str, Any]:
    return {"custom_id": custom_id, "title": title, "components": [{"type": 1, "components": [
        {"type": 4, "custom_id": "text", "label": "Text", "style": 2, "max_length": max_length, "value": value}]}]}


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    s = StandIn()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def http(standin: StandIn) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(standin.base_url, headers={"Authorization": f"Bot {standin.token}"}) as h:
        yield h


async def post(http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with http.post(API + path, json=body) as resp:
        return resp.status, await resp.json() if resp.status != 204 else {}


async def callback(http: aiohttp.ClientSession, state: InteractionState, kind: int,
                   data: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    return await post(http, f"/interactions/{state.id}/{state.token}/callback", {"type": kind, "data": data or {}})


async def bot_message(standin: StandIn, http: aiohttp.ClientSession, components: list[dict[str, Any]]) -> str:
    channel = standin.world.channel("general").id
    status, body = await post(http, f"/channels/{channel}/messages", {"content": "hi", "components": components})
    assert status == 200, body
    return str(body["id"])


async def test_components_that_break_discords_rules_are_refused(standin: StandIn,
                                                                http: aiohttp.ClientSession) -> None:
    channel = standin.world.channel("general").id
    too_many_rows = [{"type": 1, "components": [button(f"b{i}")]} for i in range(6)]
    bad = [too_many_rows,
           [{"type": 1, "components": [button(f"b{i}") for i in range(6)]}],  # six in a row
           [{"type": 1, "components": [button("x" * 101)]}],  # custom_id over 100
           [{"type": 1, "components": [button("same"), button("same")]}],  # custom_id twice
           [{"type": 1, "components": [button("b", "L" * 81)]}],  # label over 80
           [button("not-in-a-row")]]
    for components in bad:
        status, body = await post(http, f"/channels/{channel}/messages", {"content": "x", "components": components})
        assert (status, body["code"]) == (400, 50035), components
    mid = await bot_message(standin, http, [{"type": 1, "components": [button("ok")]}])
    assert standin.world.messages[mid].payload()["components"][0]["components"][0]["custom_id"] == "ok"


async def test_a_button_press_carries_the_message_and_callback_7_updates_it(
        standin: StandIn, http: aiohttp.ClientSession) -> None:
    mid = await bot_message(standin, http, [{"type": 1, "components": [button("go"), button("off")]}])
    message = standin.world.messages[mid]
    with pytest.raises(NotPossible):
        await standin.press_button("general", "alice", message, "missing")
    state = await standin.press_button("general", "alice", message, "go")
    assert (state.kind, state.message_id) == (3, mid)

    status, body = await callback(http, state, 7, {"content": "updated"})
    assert status == 200 and body["resource"]["type"] == 7
    assert standin.world.messages[mid].content == "updated"
    assert standin.world.messages[mid].components == message.components, "components not sent stay"
    assert message.content == "hi", "the record keeps what was sent before the edit"
    status, body = await callback(http, state, 4, {"content": "again"})
    assert (status, body["code"]) == (400, 40060), "one response per interaction"

    state = await standin.press_button("general", "bob", standin.world.messages[mid], "off")
    assert (await callback(http, state, 6))[0] == 200
    async with http.patch(f"{API}/webhooks/{standin.world.application_id}/{state.token}/messages/@original",
                          json={"content": "later", "components": []}) as resp:
        assert resp.status == 200
    assert standin.world.messages[mid].content == "later" and standin.world.messages[mid].components == []


async def test_callback_types_must_fit_the_interaction(standin: StandIn, http: aiohttp.ClientSession) -> None:
    slash = await standin.slash("general", "alice", "caption")
    assert (await callback(http, slash, 7, {"content": "x"}))[0] == 400, "a command has no message to update"
    assert (await callback(http, slash, 6))[0] == 400

    mid = await bot_message(standin, http, [{"type": 1, "components": [button("edit")]}])
    state = await standin.press_button("general", "alice", standin.world.messages[mid], "edit")
    status, body = await callback(http, state, 9, modal(title="T" * 46))
    assert (status, body["code"]) == (400, 50035), "a modal title is at most 45 characters"
    assert standin.open_modals("alice") == []
    assert (await callback(http, state, 9, modal()))[0] == 200
    assert standin.open_modals("alice") == ["m"] and standin.open_modals("bob") == []

    with pytest.raises(NotPossible):
        await standin.submit_modal("general", "bob", "m", {"text": "new"})  # not shown to bob
    with pytest.raises(NotPossible):
        await standin.submit_modal("general", "alice", "m", {"text": "x" * 21})  # over max_length
    with pytest.raises(NotPossible):
        await standin.submit_modal("general", "alice", "m", {"other": "new"})  # no such input
    submit = await standin.submit_modal("general", "alice", "m", {"text": "new"})
    assert (submit.kind, submit.message_id) == (5, mid)
    assert standin.open_modals("alice") == [], "a submitted modal closes"
    assert (await callback(http, submit, 9, modal()))[0] == 400, "a modal cannot answer a modal"
    assert (await callback(http, submit, 7, {"content": "from the modal"}))[0] == 200
    assert standin.world.messages[mid].content == "from the modal"
