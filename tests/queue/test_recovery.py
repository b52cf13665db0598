"""Nothing lost, nothing answered twice: worker processes killed or stopped, Redis restarted, workers dying on a job.

These prove the guarantees written in ``captionbot/queue/__init__.py``.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

from captionbot.inference.null_captioner import NullCaptioner, null_caption
from queue_harness import WorkerProcess, photo, queue_settings, running_worker, wait_for

from captionbot.formats import ErrorCode
from captionbot.queue.client import CaptionClient
from captionbot.queue.consumer import JobConsumer
from captionbot.queue.dead_letter import read_dead_letters
from captionbot.settings import Settings


async def _pending_for(client: CaptionClient, settings: Settings, consumer: str) -> int:
    for c in await client.redis.xinfo_consumers(settings.stream, settings.group):
        if c["name"].decode() == consumer:
            return int(c["pending"])
    return 0


async def _pending_is(client: CaptionClient, settings: Settings, consumer: str, n: int) -> bool:
    return await _pending_for(client, settings, consumer) == n


async def _xlen_is(client: CaptionClient, settings: Settings, n: int) -> bool:
    return await client.redis.xlen(settings.stream) == n


async def _registered(client: CaptionClient, settings: Settings, name: str) -> bool:
    return await client.redis.hexists(f"{settings.stream}:workers", name)


async def test_jobs_of_a_worker_killed_mid_batch_are_finished_by_another_once(
    redis_url: str, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    """At least once + reclaimed after: SIGKILL a worker holding a batch; the other worker answers all of it."""
    settings = queue_settings(redis_url, batch_size=4, claim_idle_ms=500)
    client = await CaptionClient.connect(settings)
    doomed = spawn_worker(settings, "doomed", delay_ms=10_000)  # holds its first batch for 10 s
    await wait_for(lambda: _registered(client, settings, "doomed"), what="doomed worker up")
    jobs = [asyncio.create_task(client.caption(photo(i))) for i in range(12)]
    await wait_for(lambda: _pending_is(client, settings, "doomed", 4), what="doomed worker holding a full batch")

    doomed.proc.send_signal(signal.SIGKILL)
    assert doomed.proc.wait(timeout=5) == -signal.SIGKILL
    spawn_worker(settings, "rescuer")
    results = await asyncio.gather(*jobs)

    assert [r.caption for r in results] == [null_caption(photo(i)) for i in range(12)]  # every job answered
    assert {r.worker for r in results} == {"rescuer"}  # the killed worker answered none, the rescuer all
    assert len({r.job_id for r in results}) == 12 and client.duplicates_dropped == 0  # each exactly once
    assert await client.redis.xlen(settings.stream) == 0
    await client.close()


async def test_sigterm_finishes_the_batch_in_hand_then_exits(
    settings: Settings, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    client = await CaptionClient.connect(settings)
    jobs = [asyncio.create_task(client.caption(photo(i))) for i in range(5)]
    await wait_for(lambda: _xlen_is(client, settings, 5), what="jobs queued")
    worker = spawn_worker(settings, "graceful", delay_ms=800)
    await wait_for(lambda: _pending_is(client, settings, "graceful", 5), what="worker holding all five")

    worker.proc.send_signal(signal.SIGTERM)
    results = await asyncio.gather(*jobs)
    assert worker.proc.wait(timeout=10) == 0, worker.output()
    assert [r.caption for r in results] == [null_caption(photo(i)) for i in range(5)]
    assert {r.worker for r in results} == {"graceful"}  # answered by the stopping worker, not left to a reclaim
    assert (await client.redis.xpending(settings.stream, settings.group))["pending"] == 0
    assert not await _registered(client, settings, "graceful")  # it signed off
    await client.close()


async def test_redis_restart_with_aof_loses_no_job_and_both_sides_reconnect(
    make_redis_server: Callable[..., Any],
) -> None:
    server = make_redis_server(appendonly=True)
    settings = queue_settings(server.url, batch_size=4, claim_idle_ms=400)
    client = await CaptionClient.connect(settings)
    async with running_worker(settings, NullCaptioner(delay_s=0.03)):
        jobs = [asyncio.create_task(client.caption(photo(i))) for i in range(30)]
        await wait_for(lambda: sum(j.done() for j in jobs) >= 4, what="some results before the restart")
        in_redis = await client.redis.xlen(settings.stream)
        server.stop()
        jobs += [asyncio.create_task(client.caption(photo(i))) for i in range(30, 35)]  # asked while Redis is down
        await asyncio.sleep(1.0)
        server.start()
        results = await asyncio.gather(*jobs)
        after = await client.caption(photo(99))  # producer and worker both back
    assert in_redis > 0  # the restart came while jobs were waiting or in progress
    assert [r.caption for r in results] == [null_caption(photo(i)) for i in range(35)]
    assert after.ok and after.caption == null_caption(photo(99))
    assert client.duplicates_dropped == 0
    await client.close()


async def test_redis_restart_without_persistence_recreates_the_group_and_serves_again(
    make_redis_server: Callable[..., Any],
) -> None:
    server = make_redis_server(appendonly=False)
    settings = queue_settings(server.url)
    client = await CaptionClient.connect(settings)
    async with running_worker(settings):
        assert (await client.caption(photo(1))).ok
        server.restart()  # stream, group and results are gone
        again = await client.caption(photo(2), timeout=10)
    assert again.ok and again.caption == null_caption(photo(2))
    await client.close()


async def test_a_job_its_workers_keep_dying_on_is_dead_lettered_after_max_attempts(redis_url: str) -> None:
    """Dead-lettered after: a worker's death while running the job alone counts against it when it is reclaimed."""
    settings = queue_settings(redis_url, max_attempts=2, claim_idle_ms=200)
    client = await CaptionClient.connect(settings)
    job = asyncio.create_task(client.caption(photo(7)))
    # Two workers take the job, start it alone and die on it (never answering: a killed worker, as Redis sees it).
    attempts = []
    for name in ("died-1", "died-2"):
        consumer = JobConsumer(client.redis, settings, name)
        batch = await consumer.read_batch()
        while not batch:
            await asyncio.sleep(0.05)
            batch = await consumer.read_batch()
        runnable, _ = await consumer.admit(batch)
        attempts += [d.attempt for d in runnable]
        await consumer.running_alone(runnable[0])
        await asyncio.sleep(0.25)
    assert attempts == [1, 2]

    model = NullCaptioner()
    async with running_worker(settings, model, name="survivor"):
        result = await job
        later = await client.caption(photo(8))
    assert result.ok is False and result.error is ErrorCode.DEAD_LETTER
    assert model.batches == [1]  # the doomed job never reached the model a third time; only the later job did
    assert later.ok
    dead = await read_dead_letters(client.redis, settings)
    assert [(d.job_id, d.attempts) for d in dead] == [(result.job_id, settings.max_attempts)]
    assert "failed 2 times" in dead[0].reason and "died running it alone" in dead[0].reason
    await client.close()


async def test_bot_and_worker_started_before_redis_begin_serving_when_it_comes_up(
    make_redis_server: Callable[..., Any],
) -> None:
    server = make_redis_server(appendonly=True)
    server.stop()  # e.g. containers starting in the wrong order
    settings = queue_settings(server.url)
    client = await CaptionClient.connect(settings)
    async with running_worker(settings) as worker:
        job = asyncio.create_task(client.caption(photo(1), timeout=15))
        await asyncio.sleep(0.5)
        assert not worker.ready and not job.done()  # waiting, not crashed
        assert (await client.stats())["available"] is False  # /stats says so instead of failing
        server.start()
        result = await job
        assert worker.ready
    assert result.ok and result.caption == null_caption(photo(1))
    await client.close()
