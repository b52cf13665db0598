"""Rate budgets: sliding windows per user, per channel and per server, in memory (one bot process).

Commands (a person waiting on ``/caption``, Describe image, a mention) and automatic alt text spend separate
budgets, so automation never uses up what a person asking needs. A refused request learns which limit it hit.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass
from enum import StrEnum

from captionbot.settings import Settings


class SlidingWindowLimiter:
    """Allows at most ``limit`` events per ``window_s`` seconds for each key."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._events: defaultdict[str, deque[float]] = defaultdict(deque)

    def _trim(self, key: str, now: float) -> deque[float]:
        q = self._events[key]
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def room(self, key: str) -> int:
        """How many more events ``key`` may have now."""
        return max(0, self.limit - len(self._trim(key, time.monotonic())))

    def take(self, key: str, n: int = 1) -> None:
        now = time.monotonic()
        self._trim(key, now).extend([now] * n)


class Scope(StrEnum):
    USER = "user"
    CHANNEL = "channel"
    SERVER = "server"


@dataclass(frozen=True)
class Limited:
    """The limit a request hit: which scope, and how many images per how many seconds it allows."""

    scope: Scope
    limit: int
    window_s: float

    def message(self) -> str:
        """What the person asking is told."""
        per = "a minute" if self.window_s == 60 else f"every {self.window_s:g} s"
        who = {Scope.USER: ("You're asking", "per person"), Scope.CHANNEL: ("This channel is asking", "here"),
               Scope.SERVER: ("This server is asking", "across the server")}[self.scope]
        images = "image" if self.limit == 1 else "images"
        return f"{who[0]} a bit too fast: at most {self.limit} {images} {per} {who[1]}. Please wait a moment."


class Budget:
    """Per-user, per-channel and per-server windows; a request for ``n`` images passes only if all three can."""

    def __init__(self, user: int, channel: int, server: int, window_s: float) -> None:
        self.windows = {Scope.USER: SlidingWindowLimiter(user, window_s),
                        Scope.CHANNEL: SlidingWindowLimiter(channel, window_s),
                        Scope.SERVER: SlidingWindowLimiter(server, window_s)}

    def try_take(self, user_id: int, channel_id: int | None, guild_id: int | None, n: int = 1) -> Limited | None:
        """Take ``n`` from each window and return None, or take nothing and return the (first) limit hit."""
        keys = {Scope.USER: str(user_id), Scope.CHANNEL: str(channel_id or f"dm:{user_id}"),
                Scope.SERVER: str(guild_id or f"dm:{user_id}")}
        for scope, window in self.windows.items():
            if window.room(keys[scope]) < n:
                return Limited(scope, window.limit, window.window_s)
        for scope, window in self.windows.items():
            window.take(keys[scope], n)
        return None


@dataclass
class CaptionRateLimits:
    """The two budgets: ``commands`` (someone is waiting) and ``automation`` (automatic alt text)."""

    commands: Budget
    automation: Budget

    @classmethod
    def from_settings(cls, settings: Settings) -> CaptionRateLimits:
        window = settings.rate_window_s
        return cls(Budget(settings.user_limit, settings.channel_limit, settings.guild_limit, window),
                   Budget(settings.alt_text_user_limit, settings.alt_text_channel_limit, settings.alt_text_guild_limit,
                          window))
