"""Another discord.py bot loads captionbot's features as extensions, alone or together."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import discord
import pytest
from bot_story import answered
from captionbot.bot.config import BotConfig
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost
from discord.ext import commands

if TYPE_CHECKING:
    from captionbot.queue.worker import Worker


class SomeoneElsesBot(commands.Bot):
    def __init__(self, config: BotConfig, extensions: tuple[str, ...]) -> None:
        super().__init__(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.captionbot_config = config  # optional: without it the extensions read the environment
        self.to_load = extensions

    async def setup_hook(self) -> None:
        for ext in self.to_load:
            await self.load_extension(ext)
        await self.tree.sync()


async def test_a_host_bot_loads_only_captions_and_its_users_can_caption(
        standin: StandIn, bot_config: BotConfig, worker: Worker, photos: list[FileToPost]) -> None:
    host = SomeoneElsesBot(bot_config, ("captionbot.bot.captions",))
    task = asyncio.create_task(host.start(standin.token))
    try:
        await asyncio.wait_for(host.wait_until_ready(), 15)
        synced = {c["name"] for c in standin.rest.commands["global"]}
        assert synced == {"caption", "Describe image"}

        answer = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[0]))
        assert answer.content.startswith("Image description: ")

        await host.unload_extension("captionbot.bot.captions")
        assert host.captionbot_services is None, "the last extension out closes the shared services"  # type: ignore[attr-defined]
    finally:
        await host.close()
        await asyncio.gather(task, return_exceptions=True)


async def test_all_three_extensions_share_one_set_of_services(standin: StandIn, bot_config: BotConfig,
                                                              worker: Worker) -> None:
    host = SomeoneElsesBot(bot_config, ("captionbot.bot.captions", "captionbot.bot.alttext", "captionbot.bot.stats"))
    task = asyncio.create_task(host.start(standin.token))
    try:
        await asyncio.wait_for(host.wait_until_ready(), 15)
        services = host.captionbot_services  # type: ignore[attr-defined]
        assert {type(c).__name__ for c in host.cogs.values()} == {"Captions", "AltText", "Stats"}
        assert all(getattr(c, "s", None) is services for c in host.cogs.values())
        await host.unload_extension("captionbot.bot.stats")
        assert host.captionbot_services is services  # type: ignore[attr-defined]
    finally:
        await host.close()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_host_bot_with_its_own_bot_package_loads_ours_without_a_clash(
        standin: StandIn, bot_config: BotConfig, worker: Worker, photos: list[FileToPost],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The most common discord.py layout has a top-level ``bot`` package; ours installs as ``captionbot.bot``."""
    host_pkg = tmp_path / "bot"
    host_pkg.mkdir()
    (host_pkg / "__init__.py").write_text("HOST = True\n")
    (host_pkg / "greetings.py").write_text(
        "from discord.ext import commands\n\n"
        "class Greetings(commands.Cog):\n    pass\n\n"
        "async def setup(bot):\n    await bot.add_cog(Greetings())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bot", raising=False)
    host_bot_package = importlib.import_module("bot")
    assert host_bot_package.HOST

    host = SomeoneElsesBot(bot_config, ("bot.greetings", "captionbot.bot.captions"))
    task = asyncio.create_task(host.start(standin.token))
    try:
        await asyncio.wait_for(host.wait_until_ready(), 15)
        assert {type(c).__name__ for c in host.cogs.values()} == {"Greetings", "Captions"}
        assert sys.modules["bot"] is host_bot_package, "loading captionbot must not replace the host's bot package"
        answer = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[0]))
        assert answer.content.startswith("Image description: ")
    finally:
        await host.close()
        await asyncio.gather(task, return_exceptions=True)
        for name in [m for m in sys.modules if m == "bot" or m.startswith("bot.")]:
            del sys.modules[name]
