"""Crash isolation: an image that kills the worker process (not an exception: the process dies) costs no healthy
job. Jobs taken back from a dead worker are run alone, and a death counts against a job only when it was alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from captionbot.inference.null_captioner import CRASH_MARK, null_caption
from queue_harness import WorkerProcess, photo, queue_settings

from captionbot.formats import CaptionResult, ErrorCode
from captionbot.queue.client import CaptionClient
from captionbot.queue.dead_letter import read_dead_letters


async def test_images_that_kill_their_worker_are_dead_lettered_alone_and_no_healthy_job_is(
    redis_url: str, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    settings = queue_settings(redis_url, batch_size=8, batch_wait_ms=50, claim_idle_ms=30_000, max_attempts=2)
    client = await CaptionClient.connect(settings)
    crash_at = {5, 17}
    images = [photo(i) + CRASH_MARK if i in crash_at else photo(i) for i in range(30)]
    jobs = [asyncio.create_task(client.caption(img, timeout=150)) for img in images]
    await asyncio.sleep(0.2)  # queued together, so the crash images share batches with healthy ones

    workers = [spawn_worker(settings, f"w{n}", model="crash") for n in range(2)]
    deaths = 0
    deadline = time.monotonic() + 150
    while not all(j.done() for j in jobs) and time.monotonic() < deadline:  # a supervisor: restart the dead
        for i, w in enumerate(workers):
            if w.proc.poll() is not None:
                deaths += 1
                workers[i] = spawn_worker(settings, f"w{len(workers) + deaths}", model="crash")
        await asyncio.sleep(0.1)
    results = await asyncio.gather(*jobs)

    for i, r in enumerate(results):
        if i in crash_at:
            assert r.error is ErrorCode.DEAD_LETTER, (i, r)
        else:
            assert r.ok and r.caption == null_caption(photo(i)), (i, r)  # no healthy job lost to a batch-mate
    dead = await read_dead_letters(client.redis, settings)
    assert sorted(d.job_id for d in dead) == sorted(results[i].job_id for i in crash_at)
    assert all(d.attempts == settings.max_attempts for d in dead)
    assert deaths >= 2 * settings.max_attempts  # each crash image killed a worker alone max_attempts times
    assert client.duplicates_dropped == 0
    await client.close()


async def test_a_crash_image_taken_back_runs_without_new_jobs_so_its_deaths_take_no_healthy_job_along(
    redis_url: str, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    """Healthy jobs keep arriving while a crash image is taken back again and again: each time it kills its worker,
    that worker held the crash image alone, so no healthy job waits for a take-over (issue 17 items 1 and 7)."""
    settings = queue_settings(redis_url, batch_size=8, batch_wait_ms=50, claim_idle_ms=30_000, max_attempts=3)
    client = await CaptionClient.connect(settings)
    crash = asyncio.create_task(client.caption(photo(0) + CRASH_MARK, timeout=120))
    await asyncio.sleep(0.2)
    workers = [spawn_worker(settings, f"w{n}", model="crash") for n in range(2)]
    healthy: list[asyncio.Task[CaptionResult]] = []
    held_at_death: list[int] = []

    async def trickle() -> None:  # a steady stream of healthy jobs, from the first death on
        i = 1
        while not crash.done():
            healthy.append(asyncio.create_task(client.caption(photo(i), timeout=120)))
            i += 1
            await asyncio.sleep(0.04)

    feeder: asyncio.Task[None] | None = None
    deadline = time.monotonic() + 120
    while not crash.done() and time.monotonic() < deadline:  # a supervisor: note what the dead held, restart
        for i, w in enumerate(workers):
            if w.proc.poll() is not None:
                pending = await client.redis.xpending_range(settings.stream, settings.group, "-", "+", 100, w.name)
                held_at_death.append(len(pending))
                workers[i] = spawn_worker(settings, f"w{len(held_at_death) + 2}", model="crash")
                feeder = feeder or asyncio.create_task(trickle())
        await asyncio.sleep(0.05)

    assert (await crash).error is ErrorCode.DEAD_LETTER
    assert feeder is not None
    await feeder
    results = await asyncio.gather(*healthy)
    assert len(results) > 50 and all(r.ok for r in results)
    assert held_at_death == [1] * settings.max_attempts, held_at_death  # the crash image, and nothing else
    await client.close()
