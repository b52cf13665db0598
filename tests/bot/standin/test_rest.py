"""The stand-in's REST answers look like Discord's where discord.py is particular about them."""

from __future__ import annotations

import aiohttp
from captionbot.bot.standin import StandIn


async def test_json_content_type_is_exact_and_the_bot_token_is_required() -> None:
    standin = StandIn()
    await standin.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{standin.base_url}/api/v10/users/@me",
                                headers={"Authorization": f"Bot {standin.token}"}) as resp:
                assert resp.headers["Content-Type"] == "application/json"
                assert (await resp.json())["bot"] is True
            async with http.get(f"{standin.base_url}/api/v10/users/@me") as resp:
                assert resp.status == 401
    finally:
        await standin.stop()


async def test_injected_429_carries_discords_via_header_and_retry_after() -> None:
    standin = StandIn()
    await standin.start()
    try:
        standin.faults.rate_limit("GET /users/@me", times=1, retry_after=0.25)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bot {standin.token}"}) as http:
            async with http.get(f"{standin.base_url}/api/v10/users/@me") as resp:
                assert resp.status == 429 and resp.headers["Via"]
                assert (await resp.json())["retry_after"] == 0.25
            async with http.get(f"{standin.base_url}/api/v10/users/@me") as resp:
                assert resp.status == 200, "the fault was for one request only"
    finally:
        await standin.stop()


async def test_the_page_posts_an_upload_into_a_channel() -> None:
    standin = StandIn()
    await standin.start()
    try:
        channel = standin.world.channel("alt-text")
        async with aiohttp.ClientSession() as http:
            async with http.get(standin.base_url + "/") as resp:
                assert "Post into channel" in await resp.text()
            form = aiohttp.FormData()
            form.add_field("user", "bob")
            form.add_field("mode", "post")
            form.add_field("file", b"\x89PNG fake", filename="cat.png", content_type="image/png")
            async with http.post(f"{standin.base_url}/_standin/channels/{channel.id}/messages", data=form) as resp:
                assert resp.status == 200
            async with http.get(f"{standin.base_url}/_standin/channels/{channel.id}/messages") as resp:
                [message] = await resp.json()
            assert message["author"] == "bob" and message["attachments"][0]["filename"] == "cat.png"
            async with http.get(message["attachments"][0]["url"]) as resp:
                assert await resp.read() == b"\x89PNG fake", "the CDN serves what was uploaded"
    finally:
        await standin.stop()


async def test_faults_can_be_injected_over_http_for_manual_trials() -> None:
    standin = StandIn()
    await standin.start()
    try:
        async with aiohttp.ClientSession() as http:
            body = {"rate_limit": {"route": "POST /channels/{channel_id}/messages", "times": 2, "retry_after": 1},
                    "slow_cdn": 0.5, "disconnect": True}
            async with http.post(f"{standin.base_url}/_standin/faults", json=body) as resp:
                assert (await resp.json()) == {"ok": True, "disconnected": 0}
        assert standin.faults.rest[0].times == 2 and standin.faults.cdn_chunk_delay_s == 0.5
    finally:
        await standin.stop()


async def test_links_use_the_public_url_when_the_bot_reaches_the_server_by_another_name() -> None:
    standin = StandIn(host="0.0.0.0", public_url="http://localhost:0/")
    await standin.start()
    try:
        from captionbot.bot.standin.server import FileToPost

        posted = await standin.post_message("general", "alice", files=[FileToPost("a.png", b"x", "image/png")])
        assert posted.attachments[0].url.startswith("http://localhost:0/cdn/attachments/")
        assert standin.gateway_url() == "ws://localhost:0/gateway"
    finally:
        await standin.stop()
