"""Every public call of the queue client honours its deadline end to end, even against a Redis frozen by SIGSTOP
(the TCP connection stays open and nothing answers: the case socket errors alone never catch)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from captionbot.inference.null_captioner import null_caption
from queue_harness import photo, queue_settings, running_worker

from captionbot.formats import ErrorCode
from captionbot.queue.client import CaptionClient

SLACK_S = 1.5


async def test_caption_stats_and_connect_return_by_their_deadline_while_redis_is_frozen(
    make_redis_server: Callable[..., Any],
) -> None:
    server = make_redis_server(appendonly=False)
    settings = queue_settings(server.url)
    client = await CaptionClient.connect(settings)
    assert (await client.stats())["available"]
    server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        result = await client.caption(photo(1), timeout=5)
        took_caption = time.monotonic() - started
        assert result.error in (ErrorCode.BUSY, ErrorCode.TIMEOUT), result

        started = time.monotonic()
        stats = await client.stats(timeout=2)
        took_stats = time.monotonic() - started
        assert stats["available"] is False

        started = time.monotonic()
        other = await CaptionClient.connect(settings, timeout=2)
        took_connect = time.monotonic() - started
    finally:
        server.proc.send_signal(signal.SIGCONT)
    assert took_caption < 5 + SLACK_S, took_caption
    assert took_stats < 2 + SLACK_S, took_stats
    assert took_connect < 2 + SLACK_S, took_connect

    async with running_worker(settings):  # Redis awake again: both clients serve
        again = await client.caption(photo(2), timeout=30)
        from_other = await other.caption(photo(3), timeout=30)
    assert again.ok and again.caption == null_caption(photo(2))
    assert from_other.ok
    await other.close()
    await client.close()
