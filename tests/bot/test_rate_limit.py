"""Rate budgets: a request passes only if the user, the channel and the server all have room; a refusal names
the limit it hit; room comes back with time."""

from __future__ import annotations

import time

from captionbot.bot.rate_limit import Budget, Limited, Scope


def test_user_channel_and_server_limits_each_hold_and_say_which_was_hit() -> None:
    budget = Budget(user=3, channel=4, server=5, window_s=60)
    assert budget.try_take(1, 10, 100, 2) is None
    assert budget.try_take(1, 10, 100, 2) == Limited(Scope.USER, 3, 60), "user 1 has room for one more, not two"
    assert budget.try_take(1, 10, 100, 1) is None
    assert budget.try_take(2, 10, 100, 1) is None
    assert budget.try_take(3, 10, 100, 1) == Limited(Scope.CHANNEL, 4, 60), "channel 10's four are used up"
    assert budget.try_take(3, 11, 100, 1) is None
    assert budget.try_take(4, 12, 100, 1) == Limited(Scope.SERVER, 5, 60), "the server's five are used up"
    assert budget.try_take(4, 12, 200, 1) is None, "another server is not affected"


def test_a_refusal_takes_nothing() -> None:
    budget = Budget(user=4, channel=3, server=10, window_s=60)
    assert budget.try_take(1, 10, 100, 4) == Limited(Scope.CHANNEL, 3, 60)
    assert budget.try_take(1, 11, 100, 3) is None
    assert budget.try_take(1, 12, 100, 1) is None, "the refused request used none of user 1's budget"
    assert budget.try_take(1, 13, 100, 1) == Limited(Scope.USER, 4, 60)


def test_room_returns_when_the_window_slides() -> None:
    budget = Budget(user=1, channel=10, server=10, window_s=0.05)
    assert budget.try_take(1, 10, 100) is None
    assert budget.try_take(1, 10, 100) is not None
    time.sleep(0.06)
    assert budget.try_take(1, 10, 100) is None


def test_the_messages_name_the_limit() -> None:
    assert Limited(Scope.USER, 10, 60).message() == (
        "You're asking a bit too fast: at most 10 images a minute per person. Please wait a moment.")
    assert "This channel" in Limited(Scope.CHANNEL, 30, 60).message()
    assert "at most 60 images every 30 s across the server" in Limited(Scope.SERVER, 60, 30).message()
