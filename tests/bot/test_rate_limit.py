"""Per-user and per-guild limits: a request passes only if both have room, and room comes back with time."""

from __future__ import annotations

import time

from captionbot.bot.rate_limit import CaptionRateLimits


def test_user_and_guild_limits_each_hold() -> None:
    limits = CaptionRateLimits(user_limit=3, guild_limit=4, window_s=60)
    assert limits.try_take(1, 100, 2)
    assert not limits.try_take(1, 100, 2), "user 1 has room for one more image, not two"
    assert limits.try_take(1, 100, 1)
    assert limits.try_take(2, 100, 1)
    assert not limits.try_take(3, 100, 1), "the guild's four are used up, whoever asks"
    assert limits.try_take(3, 200, 1), "another guild is not affected"


def test_room_returns_when_the_window_slides() -> None:
    limits = CaptionRateLimits(user_limit=1, guild_limit=10, window_s=0.05)
    assert limits.try_take(1, 100)
    assert not limits.try_take(1, 100)
    time.sleep(0.06)
    assert limits.try_take(1, 100)
