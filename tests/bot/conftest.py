"""The bot under test, for real: discord.py <-> the Discord stand-in <-> a private redis-server <-> a worker.

The worker runs the real model bundle when the ``caption_bundle`` fixture is available, else the queue's
NullCaptioner. Photos come from the real Flickr8k images (``data_dir``).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord.gateway
import discord.http
import pytest
from bot_story import BotUnderTest
from captionbot.bot.config import DISCORD_CDN_ORIGINS, BotConfig
from captionbot.bot.standin import StandIn, point_discord_at
from captionbot.bot.standin.server import FileToPost
from PIL import Image

from captionbot.settings import Settings, load_settings

if TYPE_CHECKING:
    from captionbot.queue.worker import CaptionModel, Worker

TEST_MAX_IMAGE_BYTES = 300_000


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    """A fresh local Discord, with discord.py pointed at it (and pointed back afterwards)."""
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    s = StandIn()
    await s.start()
    point_discord_at(s.base_url)
    yield s
    await s.stop()
    discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return load_settings(redis_url=redis_url, discord_token=None, result_timeout_s=30, batch_wait_ms=5,
                         claim_idle_ms=1500, max_image_bytes=TEST_MAX_IMAGE_BYTES, beam_size=2)


@pytest.fixture
def captioner(request: pytest.FixtureRequest) -> CaptionModel:
    """The real small bundle's captioner when the fixture exists, else the NullCaptioner."""
    try:
        bundle = request.getfixturevalue("caption_bundle")
    except pytest.FixtureLookupError:
        from captionbot.inference.null_captioner import NullCaptioner

        return NullCaptioner()
    from captionbot.inference.captioner import Captioner

    return Captioner.load(bundle, variant="fp32", provider="cpu", threads=1)


@pytest.fixture
async def worker(settings: Settings, captioner: CaptionModel) -> AsyncIterator[Worker]:
    from captionbot.queue.worker import Worker

    stop = asyncio.Event()
    w = Worker(settings, captioner, name="test-worker")
    task = asyncio.create_task(w.serve(stop))
    yield w
    stop.set()
    await asyncio.wait_for(task, 15)


@pytest.fixture
def bot_config(standin: StandIn, settings: Settings) -> BotConfig:
    return BotConfig(settings=settings, cdn_origins=(*DISCORD_CDN_ORIGINS, standin.base_url), download_timeout_s=3,
                     user_limit=100, guild_limit=500)


@pytest.fixture
async def bot(standin: StandIn, bot_config: BotConfig, worker: Worker) -> AsyncIterator[BotUnderTest]:
    """The captionbot, connected and ready, with a worker serving its queue."""
    b = BotUnderTest(standin, bot_config)
    await b.start()
    yield b
    await b.stop()


@pytest.fixture
async def make_bot(standin: StandIn, bot_config: BotConfig) -> AsyncIterator[Callable[..., BotUnderTest]]:
    """A bot with changed config, started by the test: ``await make_bot(user_limit=2).start()``."""
    made: list[BotUnderTest] = []

    def factory(**changes: Any) -> BotUnderTest:
        b = BotUnderTest(standin, replace(bot_config, **changes))
        made.append(b)
        return b

    yield factory
    for b in made:
        await b.stop()


@pytest.fixture
def photo_paths(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "flickr8k" / "images").glob("*.jpg"))[:24]


@pytest.fixture
def photos(photo_paths: list[Path]) -> list[FileToPost]:
    """Real photos, as a user would attach them."""
    return [FileToPost(p.name, p.read_bytes(), "image/jpeg") for p in photo_paths]


@pytest.fixture
def oversized_photo(photo_paths: list[Path]) -> FileToPost:
    """A real photo enlarged to a PNG well over the size cap."""
    img = Image.open(photo_paths[0]).convert("RGB").resize((1200, 1200))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert buf.tell() > TEST_MAX_IMAGE_BYTES
    return FileToPost("big.png", buf.getvalue(), "image/png")
