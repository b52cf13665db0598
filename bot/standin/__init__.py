"""A local Discord stand-in: enough gateway, REST and CDN for the bot's flows, plus a record and fault injection.

The real discord.py client is pointed at it by configuration (:func:`point_discord_at`); nothing in the bot knows
it is not talking to Discord. See ``docs/bot.md`` for what it speaks and what it leaves out.
"""

from captionbot.bot.standin.components import NotPossible
from captionbot.bot.standin.server import StandIn, point_discord_at

__all__ = ["NotPossible", "StandIn", "point_discord_at"]
