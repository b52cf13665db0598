"""Retrying a send that Discord failed for a passing reason, with bounded exponential backoff.

discord.py itself retries HTTP 500, 502, 504 and 524 (and 429s); a 503 or a dropped connection reaches the caller
as an exception. :func:`with_retries` tries again after 1, 2, 4 … s (capped), at most ``attempts`` times in all,
then gives up with one log line. Refusals that will not pass (403, 404, 400) are not retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import discord

log = logging.getLogger(__name__)
T = TypeVar("T")
TRANSIENT = (discord.DiscordServerError, aiohttp.ClientConnectionError)


@dataclass(frozen=True)
class Retry:
    """How hard to try: ``attempts`` in all, waiting ``first_delay_s``, then twice that, … up to ``max_delay_s``."""

    attempts: int = 4
    first_delay_s: float = 1.0
    max_delay_s: float = 8.0

    def delay(self, failed: int) -> float:
        """The wait after the ``failed``-th failed attempt (1-based)."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** (failed - 1))

    @property
    def total_wait_s(self) -> float:
        return sum(self.delay(i) for i in range(1, self.attempts))


class GaveUp(Exception):
    """Every attempt failed for a passing reason; the last error is ``__cause__``."""


async def with_retries(send: Callable[[], Awaitable[T]], what: str, retry: Retry) -> T:
    """``await send()``, again after a transient failure; :class:`GaveUp` (logged) after ``retry.attempts``."""
    for attempt in range(1, retry.attempts + 1):
        try:
            return await send()
        except TRANSIENT as exc:
            if attempt >= retry.attempts:
                log.error("%s: giving up after %d tries (last: %s)", what, attempt, exc)
                raise GaveUp(what) from exc
            wait = retry.delay(attempt)
            log.warning("%s failed (%s); try %d of %d in %.1f s", what, exc, attempt + 1, retry.attempts, wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")
