"""The stand-in's gateway speaks both transport compressions discord.py asks for, and replays on RESUME."""

from __future__ import annotations

import json
import zlib

import aiohttp
import pytest
import zstandard
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.world import INTENT_GUILD_MESSAGES, INTENT_GUILDS


class ZlibReader:
    """What discord.py does for zlib-stream: buffer until the Z_SYNC_FLUSH marker, one context per connection."""

    def __init__(self) -> None:
        self.z, self.buf = zlib.decompressobj(), bytearray()

    def feed(self, data: bytes) -> dict | None:
        self.buf += data
        if self.buf[-4:] != b"\x00\x00\xff\xff":
            return None
        out, self.buf = self.z.decompress(self.buf), bytearray()
        return json.loads(out)


class ZstdReader:
    def __init__(self) -> None:
        self.z = zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes) -> dict | None:
        return json.loads(self.z.decompress(data))


async def receive(ws: aiohttp.ClientWebSocketResponse, reader: ZlibReader | ZstdReader) -> dict:
    while True:
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        frame = reader.feed(msg.data)
        if frame is not None:
            return frame


@pytest.mark.parametrize(("compress", "reader"), [("zlib-stream", ZlibReader), ("zstd-stream", ZstdReader)])
async def test_hello_ready_guild_and_heartbeat_over_each_compression(compress: str, reader: type) -> None:
    standin = StandIn()
    await standin.start()
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"{standin.gateway_url()}?v=10&encoding=json&compress={compress}") as ws:
            r = reader()
            hello = await receive(ws, r)
            assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
            await ws.send_str(json.dumps({"op": 2, "d": {"token": standin.token, "intents": INTENT_GUILDS}}))
            ready, guild = await receive(ws, r), await receive(ws, r)
            assert (ready["t"], ready["s"], guild["t"], guild["s"]) == ("READY", 1, "GUILD_CREATE", 2)
            assert ready["d"]["resume_gateway_url"] == standin.gateway_url()
            assert [c["name"] for c in guild["d"]["channels"]] == ["general", "alt-text", "gallery"]
            await ws.send_str(json.dumps({"op": 1, "d": 2}))
            assert (await receive(ws, r))["op"] == 11
    finally:
        await standin.stop()


async def test_a_bad_token_is_refused_and_an_unknown_session_cannot_resume() -> None:
    standin = StandIn()
    await standin.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(standin.gateway_url()) as ws:
                await ws.receive_json()
                await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 1}})
                closed = await ws.receive()
                assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 4004
            async with http.ws_connect(standin.gateway_url()) as ws:
                await ws.receive_json()
                await ws.send_json({"op": 6, "d": {"token": standin.token, "session_id": "nope", "seq": 3}})
                assert (await ws.receive_json())["op"] == 9
    finally:
        await standin.stop()


async def test_resume_replays_exactly_the_events_missed_and_intents_shape_messages() -> None:
    standin = StandIn()
    await standin.start()
    try:
        async with aiohttp.ClientSession() as http:
            intents = INTENT_GUILDS | INTENT_GUILD_MESSAGES  # no message content
            async with http.ws_connect(standin.gateway_url()) as ws:
                await ws.receive_json()
                await ws.send_json({"op": 2, "d": {"token": standin.token, "intents": intents}})
                session = (await ws.receive_json())["d"]["session_id"]
                await ws.receive_json()  # GUILD_CREATE, s=2
                from captionbot.bot.standin.server import FileToPost

                await standin.post_message("general", "alice", "hello", [FileToPost("a.png", b"x", "image/png")])
                seen = await ws.receive_json()
                assert seen["s"] == 3 and seen["d"]["content"] == "" and seen["d"]["attachments"] == []
            await standin.post_message("general", "bob", "while away")  # s=4, kept for RESUME
            await standin.post_message("general", "bob", "still away")  # s=5
            async with http.ws_connect(standin.gateway_url()) as ws:
                await ws.receive_json()
                await ws.send_json({"op": 6, "d": {"token": standin.token, "session_id": session, "seq": 3}})
                replayed = [await ws.receive_json() for _ in range(3)]
                assert [(f["s"], f["t"]) for f in replayed] == [(4, "MESSAGE_CREATE"), (5, "MESSAGE_CREATE"),
                                                                (6, "RESUMED")]
    finally:
        await standin.stop()


async def test_a_real_discord_client_sees_a_heartbeat_latency_of_a_round_trip_not_of_an_interval() -> None:
    """discord.py times an ack against the heartbeat it last *finished* sending: an instant ack (in-process
    gateway) often lands before that bookkeeping, and the client then reports one whole interval of latency and
    logs "Can't keep up, ... 41s behind" on every `captionbot run`. The stand-in answers after a round trip."""
    import asyncio

    import discord
    from captionbot.bot.standin.server import point_discord_at

    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    standin = StandIn(heartbeat_ms=150)
    await standin.start()
    point_discord_at(standin.base_url)
    client = discord.Client(intents=discord.Intents.default())
    task = asyncio.create_task(client.start(standin.token))
    try:
        await asyncio.wait_for(client.wait_until_ready(), 10)
        seen = []
        for _ in range(300):  # 6 s: about 40 heartbeats, each latency sampled several times
            await asyncio.sleep(0.02)
            seen.append(client.latency)
        assert min(seen) > 0 and max(seen) < 0.13, sorted(seen)[-5:]  # a 50 ms round trip, never ~0.15 s
    finally:
        await client.close()
        await asyncio.wait_for(task, 10)
        await standin.stop()
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
