"""A busy channel: twenty photos at once get twenty descriptions, each exactly once, whatever breaks meanwhile."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from bot_story import BotUnderTest, quiet, turn_on
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost
from captionbot.bot.standin.world import Message
from redis.asyncio import Redis

from captionbot.settings import Settings

if TYPE_CHECKING:
    from captionbot.queue.worker import CaptionModel

BURST = 20
POSTERS = ("alice", "bob")


async def post_burst(standin: StandIn, photos: list[FileToPost], start: int = 0, n: int = BURST) -> list[Message]:
    return [await standin.post_message("alt-text", POSTERS[i % 2], files=[photos[i]]) for i in range(start, n)]


async def assert_each_answered_once(standin: StandIn, posted: list[Message], timeout: float = 45) -> None:
    await standin.wait_for(lambda _: all(standin.replies_to(m) for m in posted), timeout)
    await quiet(standin, 1.0)  # time for any duplicate to show up
    counts = [len(standin.replies_to(m)) for m in posted]
    assert counts == [1] * len(posted), counts
    assert all(standin.replies_to(m)[0].content.startswith("Image description: ") for m in posted)


async def test_twenty_photos_get_twenty_replies_through_rate_limits_and_server_errors(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    await turn_on(standin, "alt-text")
    # A 502 first (discord.py waits 1 + 2 x attempt seconds before retrying a 5xx), then three 429s.
    standin.faults.server_error("POST /channels/{channel_id}/messages", times=1, status=502)
    standin.faults.rate_limit("POST /channels/{channel_id}/messages", times=3, retry_after=0.2)

    posted = await post_burst(standin, photos)
    await assert_each_answered_once(standin, posted)
    assert [f.hits for f in standin.faults.rest] == [1, 3], "discord.py met (and rode out) every injected fault"


async def test_a_gateway_disconnect_during_the_burst_is_resumed_and_every_photo_answered(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    await turn_on(standin, "alt-text")
    first = await post_burst(standin, photos, 0, BURST // 2)
    assert await standin.disconnect_bot() == 1
    second = await post_burst(standin, photos, BURST // 2, BURST)  # posted while the bot is away
    await assert_each_answered_once(standin, first + second)
    assert standin.gateway.resumes >= 1 and standin.gateway.identifies == 1, "resumed, not a fresh session"


async def test_when_discord_asks_the_bot_to_reconnect_it_resumes_without_missing_a_photo(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    await turn_on(standin, "alt-text")
    await standin.gateway.request_reconnect()  # op 7, as Discord sends before moving a session
    posted = await post_burst(standin, photos, 0, 4)
    await assert_each_answered_once(standin, posted)
    assert standin.gateway.resumes == 1 and standin.gateway.identifies == 1


def worker_command(caption_bundle: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "captionbot.cli", "worker", "--batch-size", "2", "--name", "doomed-worker"]
    if caption_bundle is not None:
        return [*cmd, "--bundle", str(caption_bundle), "--threads", "1"]
    return [*cmd, "--test-model", "null", "--test-model-delay-ms", "300"]


async def test_a_worker_killed_mid_burst_loses_nothing_and_repeats_nothing(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], settings: Settings, captioner: CaptionModel,
        redis_url: str, photos: list[FileToPost], request: pytest.FixtureRequest) -> None:
    from captionbot.queue.worker import Worker

    try:
        bundle: Path | None = request.getfixturevalue("caption_bundle")
    except pytest.FixtureLookupError:
        bundle = None
    env = {**os.environ, "CAPTIONBOT_REDIS_URL": redis_url,
           "CAPTIONBOT_CLAIM_IDLE_MS": str(settings.claim_idle_ms), "CAPTIONBOT_LOG_LEVEL": "WARNING"}
    doomed = subprocess.Popen(worker_command(bundle), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert doomed.stderr is not None
    stop = asyncio.Event()
    rescuer: asyncio.Task[None] | None = None
    redis = Redis.from_url(redis_url)
    try:
        await make_bot().start()
        await turn_on(standin, "alt-text")
        posted = await post_burst(standin, photos)

        # Kill the worker (SIGKILL: no goodbye) while it holds jobs it has not answered.
        async with asyncio.timeout(30):
            while not (await redis.xpending(settings.stream, settings.group))["pending"]:
                assert doomed.poll() is None, doomed.stderr.read().decode()[-2000:]
                await asyncio.sleep(0.01)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        answered_before = sum(bool(standin.replies_to(m)) for m in posted)
        assert answered_before < BURST, "the worker died mid-burst"

        rescuer = asyncio.create_task(Worker(settings, captioner, name="rescuer").serve(stop))
        await assert_each_answered_once(standin, posted, timeout=60)
    finally:
        stop.set()
        if rescuer is not None:
            await asyncio.wait_for(rescuer, 15)
        if doomed.poll() is None:
            doomed.kill()
        await redis.aclose()
