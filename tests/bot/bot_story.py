"""Small steps the end-to-end stories share: waiting for answers, giving the bot its chance to misbehave."""

from __future__ import annotations

import asyncio

from captionbot.bot.config import BotConfig
from captionbot.bot.runner import CaptionBot
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.record import Sent
from captionbot.bot.standin.rest import InteractionState
from captionbot.bot.standin.world import Message


class BotUnderTest:
    """Starts, stops and restarts the real bot against the stand-in."""

    def __init__(self, standin: StandIn, config: BotConfig) -> None:
        self.standin = standin
        self.config = config
        self.bot: CaptionBot | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, alt_text: bool = True) -> CaptionBot:
        self.bot = CaptionBot(self.config, alt_text=alt_text, guild_ready_timeout=0.05)
        self._task = asyncio.create_task(self.bot.start(self.standin.token))
        ready = asyncio.create_task(self.bot.wait_until_ready())
        await asyncio.wait([ready, self._task], timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await self.bot.close()
            self._task.result() if self._task.done() else None  # raise the start-up error, if there was one
            raise AssertionError("the bot did not become ready")
        return self.bot

    async def stop(self) -> None:
        if self.bot is not None:
            await self.bot.close()
            await asyncio.wait_for(asyncio.gather(self._task, return_exceptions=True), 10)
            self.bot = None

    async def restart(self) -> CaptionBot:
        await self.stop()
        return await self.start()


async def answered(standin: StandIn, interaction: InteractionState, timeout: float = 20) -> Sent:
    """The (last) message that answers an interaction, once there is one."""
    await standin.wait_for(lambda _: bool(standin.answers_to(interaction.id)), timeout)
    return standin.answers_to(interaction.id)[-1]


async def replies(standin: StandIn, message: Message, n: int = 1, timeout: float = 20) -> list[Sent]:
    await standin.wait_for(lambda _: len(standin.replies_to(message)) >= n, timeout)
    return standin.replies_to(message)


async def quiet(standin: StandIn, seconds: float = 0.8) -> None:
    """Let the bot have its chance to (wrongly) answer."""
    await asyncio.sleep(seconds)


async def turn_on(standin: StandIn, channel: str = "alt-text", **options: object) -> Sent:
    """The moderator switches automatic alt text on for a channel."""
    state = await standin.slash("general", "mod", "alttext on", channel=standin.world.channel(channel), **options)
    return await answered(standin, state)
