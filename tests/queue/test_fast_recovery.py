"""Faster recovery: a killed worker's jobs are taken over by its heartbeat's silence (within 5 s), not after the
30 s reclaim idle time; a worker whose batch was cut off by a Redis outage takes it back as soon as Redis returns."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

from captionbot.inference.null_captioner import NullCaptioner, null_caption
from queue_harness import WorkerProcess, photo, queue_settings, running_worker, wait_for

from captionbot.queue.client import CaptionClient
from captionbot.settings import Settings


async def _pending_for(client: CaptionClient, settings: Settings, consumer: str) -> int:
    for c in await client.redis.xinfo_consumers(settings.stream, settings.group):
        if c["name"].decode() == consumer:
            return int(c["pending"])
    return 0


async def _registered(client: CaptionClient, settings: Settings, name: str) -> bool:
    return bool(await client.redis.hexists(f"{settings.stream}:workers", name))


async def test_a_killed_workers_jobs_are_taken_over_within_5_s_not_the_30_s_idle_time(
    redis_url: str, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    settings = queue_settings(redis_url, batch_size=4, claim_idle_ms=30_000)
    client = await CaptionClient.connect(settings)
    try:
        doomed = spawn_worker(settings, "doomed", delay_ms=60_000)
        await wait_for(lambda: _registered(client, settings, "doomed"), what="doomed up", timeout=20)
        jobs = [asyncio.create_task(client.caption(photo(i), timeout=60)) for i in range(4)]
        await wait_for(lambda: _pending_is(client, settings, "doomed", 4), what="doomed holding the batch")
        spawn_worker(settings, "rescuer")
        await wait_for(lambda: _registered(client, settings, "rescuer"), what="rescuer up", timeout=20)

        doomed.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        results = await asyncio.gather(*jobs)
        recovered_in = time.monotonic() - killed_at
        assert [r.caption for r in results] == [null_caption(photo(i)) for i in range(4)]
        assert {r.worker for r in results} == {"rescuer"} and client.duplicates_dropped == 0
        assert recovered_in < 5.0, recovered_in
        assert not await _registered(client, settings, "doomed")  # its heartbeat entry is cleared
    finally:
        await client.close()


async def _pending_is(client: CaptionClient, settings: Settings, consumer: str, n: int) -> bool:
    return await _pending_for(client, settings, consumer) == n


async def test_a_batch_cut_off_by_a_redis_outage_is_answered_soon_after_redis_returns(
    make_redis_server: Callable[..., Any],
) -> None:
    server = make_redis_server(appendonly=True)
    settings = queue_settings(server.url, batch_size=4, claim_idle_ms=30_000)
    client = await CaptionClient.connect(settings)
    async with running_worker(settings, NullCaptioner(delay_s=1.0)):
        jobs = [asyncio.create_task(client.caption(photo(i), timeout=60)) for i in range(4)]
        await wait_for(lambda: _pending_is(client, settings, "w1", 4), what="the worker holding the batch")
        server.stop()  # the batch's answers cannot be published
        await asyncio.sleep(4.0)
        server.start()
        back_at = time.monotonic()
        results = await asyncio.gather(*jobs)
        recovered_in = time.monotonic() - back_at
    assert [r.caption for r in results] == [null_caption(photo(i)) for i in range(4)]
    assert recovered_in < 8.0, recovered_in  # not the 30 s reclaim idle time
    await client.close()
