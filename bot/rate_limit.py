"""Per-user and per-guild rate limits: a sliding window of timestamps per key, in memory (one bot process)."""

from __future__ import annotations

import time
from collections import defaultdict, deque


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


class CaptionRateLimits:
    """The bot's two limits together: a request for ``n`` images passes only if both the user and the guild can."""

    def __init__(self, user_limit: int, guild_limit: int, window_s: float) -> None:
        self.users = SlidingWindowLimiter(user_limit, window_s)
        self.guilds = SlidingWindowLimiter(guild_limit, window_s)

    def try_take(self, user_id: int, guild_id: int | None, n: int = 1) -> bool:
        ukey, gkey = str(user_id), str(guild_id or f"dm:{user_id}")
        if self.users.room(ukey) < n or self.guilds.room(gkey) < n:
            return False
        self.users.take(ukey, n)
        self.guilds.take(gkey, n)
        return True
