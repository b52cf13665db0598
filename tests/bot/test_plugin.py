"""Another discord.py bot loads captionbot's features as extensions, alone or together."""

from __future__ import annotations

import asyncio

import discord
from bot_story import answered
from discord.ext import commands

from bot.config import BotConfig
from bot.standin import StandIn
from bot.standin.server import FileToPost


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
        standin: StandIn, bot_config: BotConfig, worker: object, photos: list[FileToPost]) -> None:
    host = SomeoneElsesBot(bot_config, ("bot.captions",))
    task = asyncio.create_task(host.start(standin.token))
    try:
        await asyncio.wait_for(host.wait_until_ready(), 15)
        synced = {c["name"] for c in standin.rest.commands["global"]}
        assert synced == {"caption", "Describe image"}

        answer = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[0]))
        assert answer.content.startswith("Image description: ")

        await host.unload_extension("bot.captions")
        assert host.captionbot_services is None, "the last extension out closes the shared services"  # type: ignore[attr-defined]
    finally:
        await host.close()
        await asyncio.gather(task, return_exceptions=True)


async def test_all_three_extensions_share_one_set_of_services(standin: StandIn, bot_config: BotConfig,
                                                              worker: object) -> None:
    host = SomeoneElsesBot(bot_config, ("bot.captions", "bot.alttext", "bot.stats"))
    task = asyncio.create_task(host.start(standin.token))
    try:
        await asyncio.wait_for(host.wait_until_ready(), 15)
        services = host.captionbot_services  # type: ignore[attr-defined]
        assert {type(c).__name__ for c in host.cogs.values()} == {"Captions", "AltText", "Stats"}
        assert all(getattr(c, "s", None) is services for c in host.cogs.values())
        await host.unload_extension("bot.stats")
        assert host.captionbot_services is services  # type: ignore[attr-defined]
    finally:
        await host.close()
        await asyncio.gather(task, return_exceptions=True)
