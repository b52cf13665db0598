"""BUSY inside a flood comes back fast (issue 17 item 7): a flood of callers with real-sized images at a full queue
is refused without shipping the images, and a burst larger than the connection pool is never taken for Redis
being down. Real redis-server; figures as ratios within the run."""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import time

import pytest
from queue_harness import queue_settings, wait_for

from captionbot.formats import ErrorCode
from captionbot.queue.client import CaptionClient
from captionbot.queue.connection import MAX_CONNECTIONS

FLOOD = 3 * MAX_CONNECTIONS  # callers at once: three times the connection pool
IMAGE_BYTES = 300_000  # about what the bot queues for a phone photo (bot/image_shrink.py)
ROOM = FLOOD + 20


def image(i: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + i.to_bytes(4, "big") + os.urandom(IMAGE_BYTES)


async def timed(client: CaptionClient, data: bytes) -> tuple[float, ErrorCode | None]:
    started = time.perf_counter()
    result = await client.caption(data, timeout=30)
    return time.perf_counter() - started, result.error


async def test_busy_inside_a_flood_comes_back_far_sooner_than_the_flood_takes_to_queue(
        redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = queue_settings(redis_url, queue_maxlen=ROOM)
    client = await CaptionClient.connect(settings)
    caplog.set_level(logging.WARNING, logger="captionbot.queue")

    # 1. A flood with room (no worker: the jobs wait): how long shipping FLOOD images takes, the reference.
    started = time.perf_counter()
    queued = [asyncio.create_task(client.caption(image(i), timeout=60)) for i in range(FLOOD)]
    await wait_for(lambda: _xlen_at_least(client, settings.stream, FLOOD), timeout=60, what="the flood queued")
    ship_s = time.perf_counter() - started
    assert not [r for r in caplog.records if "unreachable" in r.getMessage()], \
        "a burst over the connection pool is not 'Redis down'"
    filler = [asyncio.create_task(client.caption(image(FLOOD + i), timeout=60)) for i in range(ROOM - FLOOD)]
    await wait_for(lambda: _xlen_at_least(client, settings.stream, ROOM), what="the queue full")

    # 2. BUSY alone, then BUSY for a flood of the same size at the full queue.
    alone = [await timed(client, image(i)) for i in range(20)]
    flood = await asyncio.gather(*(timed(client, image(i)) for i in range(FLOOD)))

    assert {code for _, code in alone + flood} == {ErrorCode.BUSY}
    assert await client.redis.xlen(settings.stream) == ROOM, "the stream did not grow"
    busy_alone = statistics.median(s for s, _ in alone)
    busy_p90 = sorted(s for s, _ in flood)[int(0.9 * FLOOD)]
    print(f"shipping {FLOOD} images {ship_s * 1000:.0f} ms; BUSY alone median {busy_alone * 1000:.2f} ms, "
          f"in the flood p90 {busy_p90 * 1000:.1f} ms")
    # Before: each caller shipped its image to be refused, and callers past the pool backed off as if Redis were
    # down: the flood's BUSY p90 was about the whole shipping time (x1.0-1.5). Now one small shared question:
    # x0.01-0.03 on a quiet machine; the bound leaves room for a machine crowded by other work (x0.5 seen at load 15).
    assert busy_p90 < ship_s / 2, (busy_p90, ship_s)

    await client.close()
    for task in queued + filler:
        assert (await task).error is ErrorCode.INTERNAL  # "client closed": they were waiting, never refused


async def _xlen_at_least(client: CaptionClient, stream: str, n: int) -> bool:
    return int(await client.redis.xlen(stream)) >= n


async def test_a_flood_at_a_queue_with_some_room_fills_it_exactly_and_the_rest_are_busy(redis_url: str) -> None:
    """The shared answer hands out only the room there is, and never refuses a job the queue had room for."""
    room = 50
    settings = queue_settings(redis_url, queue_maxlen=room)
    client = await CaptionClient.connect(settings)
    calls = [asyncio.create_task(client.caption(image(i), timeout=20)) for i in range(FLOOD)]
    await wait_for(lambda: sum(c.done() for c in calls) >= FLOOD - room, what="the refused answered")
    await asyncio.sleep(0.5)  # time for any wrong refusal to show
    refused = [c for c in calls if c.done()]
    assert len(refused) == FLOOD - room and all(c.result().error is ErrorCode.BUSY for c in refused)
    assert await client.redis.xlen(settings.stream) == room, "exactly the room was taken"
    await client.close()
    waited = [(await c).error for c in calls if c not in refused]
    assert set(waited) == {ErrorCode.INTERNAL}, "queued and waiting until the client closed"
