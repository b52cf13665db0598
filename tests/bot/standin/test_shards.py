"""The stand-in shards as Discord does: IDENTIFY with ``shard: [id, count]`` gets the guilds of
``(guild_id >> 22) % count == id`` and only their events; a malformed ``shard`` is closed with 4010."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.world import INTENT_GUILD_MESSAGES, INTENT_GUILDS, INTENT_MESSAGE_CONTENT

INTENTS = INTENT_GUILDS | INTENT_GUILD_MESSAGES | INTENT_MESSAGE_CONTENT


async def identify(ws: aiohttp.ClientWebSocketResponse, standin: StandIn, shard: Any) -> dict[str, Any]:
    await ws.receive_json()  # HELLO
    d: dict[str, Any] = {"token": standin.token, "intents": INTENTS}
    if shard is not None:
        d["shard"] = shard
    await ws.send_json({"op": 2, "d": d})
    return await ws.receive_json()


async def events(ws: aiohttp.ClientWebSocketResponse, seconds: float = 0.3) -> list[dict[str, Any]]:
    got = []
    try:
        while True:
            got.append(await ws.receive_json(timeout=seconds))
    except TimeoutError:
        return got


async def test_each_shard_gets_its_own_guild_and_only_its_events() -> None:
    standin = StandIn(guilds=2)
    await standin.start()
    first, second = standin.world.guild_ids
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(standin.gateway_url()) as ws0, \
                http.ws_connect(standin.gateway_url()) as ws1:
            ready0, ready1 = await identify(ws0, standin, [0, 2]), await identify(ws1, standin, [1, 2])
            assert [g["id"] for g in ready0["d"]["guilds"]] == [first] and ready0["d"]["shard"] == [0, 2]
            assert [g["id"] for g in ready1["d"]["guilds"]] == [second]
            [guild0], [guild1] = await events(ws0), await events(ws1)
            assert (guild0["t"], guild0["d"]["id"], guild1["d"]["id"]) == ("GUILD_CREATE", first, second)
            assert [c["name"] for c in guild1["d"]["channels"]] == ["second-general", "second-alt-text"]
            async with http.get(f"{standin.base_url}/api/v10/gateway/bot",
                                headers={"Authorization": f"Bot {standin.token}"}) as resp:
                assert (await resp.json())["shards"] == 2

            await standin.post_message("alt-text", "alice", "in the first guild")
            await standin.post_message("second-alt-text", "bob", "in the second guild")
            await standin.slash("second-general", "mod", "help")
            got0, got1 = await events(ws0), await events(ws1)
            assert [(e["t"], e["d"]["guild_id"]) for e in got0] == [("MESSAGE_CREATE", first)]
            assert [(e["t"], e["d"]["guild_id"]) for e in got1] == [("MESSAGE_CREATE", second),
                                                                     ("INTERACTION_CREATE", second)]
    finally:
        await standin.stop()


async def test_an_unsharded_connection_gets_every_guild() -> None:
    standin = StandIn(guilds=2)
    await standin.start()
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(standin.gateway_url()) as ws:
            ready = await identify(ws, standin, None)
            assert {g["id"] for g in ready["d"]["guilds"]} == set(standin.world.guild_ids)
            assert [e["t"] for e in await events(ws)] == ["GUILD_CREATE", "GUILD_CREATE"]
    finally:
        await standin.stop()


async def test_a_malformed_shard_is_refused_with_4010() -> None:
    standin = StandIn(guilds=2)
    await standin.start()
    try:
        async with aiohttp.ClientSession() as http:
            for bad in ([2, 2], [0], "0,2", [0, 0], [-1, 2]):
                async with http.ws_connect(standin.gateway_url()) as ws:
                    await ws.receive_json()
                    await ws.send_json({"op": 2, "d": {"token": standin.token, "intents": 1, "shard": bad}})
                    closed = await asyncio.wait_for(ws.receive(), 5)
                    assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 4010, bad
    finally:
        await standin.stop()
