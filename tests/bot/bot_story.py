"""Small steps the end-to-end stories share: waiting for answers, giving the bot its chance to misbehave."""

from __future__ import annotations

import asyncio

from bot.standin import StandIn
from bot.standin.record import Sent
from bot.standin.rest import InteractionState
from bot.standin.world import Message


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
