"""The high-priority lane: a person waiting on a command is served before the automation backlog, with the same
guarantees (byte budget, reclaim, crash isolation, dead letters) in both lanes, and the old stream still served."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from captionbot.inference.null_captioner import CRASH_MARK, NullCaptioner, null_caption
from queue_harness import WorkerProcess, photo, queue_settings, running_worker, wait_for

from captionbot.formats import CaptionResult, ErrorCode, Priority
from captionbot.queue.client import CaptionClient
from captionbot.queue.dead_letter import read_dead_letters
from captionbot.queue.streams import ensure_group

BACKLOG = 40


async def test_a_command_is_answered_before_the_automation_backlog_drains(
    redis_url: str, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    """40 automatic jobs are queued on one worker (4 per batch, 0.1 s a batch); a command asked once the worker is
    busy comes back after a few of them, while a job asked at the same moment in the low lane (as every job went
    before the lane) waits for the whole backlog."""
    settings = queue_settings(redis_url, batch_size=4, batch_wait_ms=0)
    client = await CaptionClient.connect(settings)
    spawn_worker(settings, "w1", delay_ms=100)
    assert await client.workers_alive(wait_s=30)
    answered = 0  # backlog jobs answered so far
    seen_at: dict[str, int] = {}  # how many backlog jobs had been answered when each probe's answer came

    async def backlog_job(i: int) -> CaptionResult:
        nonlocal answered
        result = await client.caption(photo(i), priority=Priority.LOW)
        answered += 1
        return result

    async def probe(name: str, priority: Priority) -> CaptionResult:
        result = await client.caption(photo(1000 + len(seen_at)), priority=priority)
        seen_at[name] = answered
        return result

    backlog = [asyncio.create_task(backlog_job(i)) for i in range(BACKLOG)]
    await wait_for(lambda: answered >= 1, 30, "the worker to start on the backlog")
    command, same_time_low = await asyncio.gather(probe("command", Priority.HIGH), probe("low", Priority.LOW))
    results = await asyncio.gather(*backlog)

    assert command.ok and same_time_low.ok and all(r.ok for r in results)
    assert seen_at["command"] <= BACKLOG // 4, seen_at  # served within a few batches, not after the backlog
    assert seen_at["low"] >= BACKLOG - settings.batch_size, seen_at  # the same ask without the lane: after it all
    assert command.latency_ms < 0.5 * same_time_low.latency_ms, (command.latency_ms, same_time_low.latency_ms)
    assert client.duplicates_dropped == 0
    await client.close()


class PerImageModel(NullCaptioner):
    """The null model taking 0.15 s an image, as a CPU does (a batch of 8 takes 1.2 s, one image 0.15 s)."""

    def caption_images(self, images: Sequence[bytes], beam_size: int = 3, heatmap: bool = False) -> list[Any]:
        out = super().caption_images(images, beam_size, heatmap)  # counts the batch as it starts
        time.sleep(0.15 * len(images))
        return out


async def test_a_command_runs_beside_a_batch_of_automation_not_after_it(redis_url: str) -> None:
    """A command asked while the worker runs a batch of 8 automatic jobs is run beside that batch and answered
    before it, and the automatic jobs still run as one batch (batching is what makes a CPU fast)."""
    settings = queue_settings(redis_url, batch_size=8, batch_wait_ms=0)
    model = PerImageModel()
    client = await CaptionClient.connect(settings)
    answered = 0

    async def automatic(i: int) -> None:
        nonlocal answered
        assert (await client.caption(photo(100 + i), priority=Priority.LOW)).ok
        answered += 1

    batch = [asyncio.create_task(automatic(i)) for i in range(8)]
    await wait_for(lambda: _length_is(client, settings.stream, 8), 10, "the automatic jobs to be queued")
    async with running_worker(settings, model):
        await wait_for(lambda: model.batches == [8], 30, "the worker running the batch")
        command = await client.caption(photo(200), priority=Priority.HIGH)
        answered_before_command = answered
        await asyncio.gather(*batch)
    assert command.ok and command.caption == null_caption(photo(200))
    assert answered_before_command == 0, answered_before_command  # not after the batch
    assert model.batches == [8, 1], model.batches  # automation batched as before, the command beside it
    await client.close()


async def test_a_full_automation_lane_never_makes_a_command_busy(
    redis_url: str, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    """Each lane has its own room (``queue_maxlen``, ``queue_max_bytes``): automation that fills its lane is told
    BUSY, a command is still queued and answered."""
    settings = queue_settings(redis_url, queue_maxlen=5)
    client = await CaptionClient.connect(settings)
    waiting = [asyncio.create_task(client.caption(photo(i), priority=Priority.LOW)) for i in range(5)]
    await wait_for(lambda: _length_is(client, settings.redis_keys.jobs, 5), 10, "the low lane to fill")
    busy = await client.caption(photo(5), priority=Priority.LOW)
    assert busy.error is ErrorCode.BUSY
    command = asyncio.create_task(client.caption(photo(6), priority=Priority.HIGH))
    spawn_worker(settings, "w1")
    answer = await command
    assert answer.ok and answer.caption == null_caption(photo(6))
    assert all(r.ok for r in await asyncio.gather(*waiting))
    await client.close()


async def _length_is(client: CaptionClient, stream: str, n: int) -> bool:
    return int(await client.redis.xlen(stream)) == n


async def test_jobs_in_the_old_stream_are_served_after_the_upgrade(
    redis_url: str, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    """Jobs queued before the lanes existed sit in the one old stream: it is the low lane, so workers serve them."""
    settings = queue_settings(redis_url)
    keys = settings.redis_keys
    assert keys.lane(Priority.LOW) == keys.jobs == settings.stream  # the old stream's name, unchanged
    client = await CaptionClient.connect(settings)
    old = [asyncio.create_task(client.caption(photo(i))) for i in range(3)]  # the default: the old stream
    await wait_for(lambda: _length_is(client, settings.stream, 3), 10, "the old jobs to be queued")
    await client.redis.delete(keys.commands)  # as before the upgrade: no high lane, no group on it
    spawn_worker(settings, "w1")
    assert [r.caption for r in await asyncio.gather(*old)] == [null_caption(photo(i)) for i in range(3)]
    assert (await client.caption(photo(9), priority=Priority.HIGH)).ok  # the new lane works next to it
    await client.close()


async def test_a_command_whose_worker_is_killed_is_taken_over_and_answered(
    redis_url: str, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    settings = queue_settings(redis_url, claim_idle_ms=30_000)
    client = await CaptionClient.connect(settings)
    first = spawn_worker(settings, "w1", delay_ms=60_000)  # holds its batch for a minute
    job = asyncio.create_task(client.caption(photo(1), priority=Priority.HIGH, timeout=60))
    await wait_for(lambda: _pending(client, settings.redis_keys.commands), 30, "the command to be taken")
    first.proc.kill()
    first.proc.wait(10)
    started = time.monotonic()
    spawn_worker(settings, "w2")
    result = await job
    assert result.ok and result.caption == null_caption(photo(1)) and result.worker == "w2"
    assert time.monotonic() - started < 20  # taken over on the dead heartbeat, not after claim_idle_ms (30 s)
    assert (await client.redis.xpending(settings.redis_keys.commands, settings.group))["pending"] == 0
    await client.close()


async def _pending(client: CaptionClient, stream: str) -> bool:
    return bool((await client.redis.xpending(stream, client.keys.group))["pending"])


async def test_a_command_image_that_kills_its_worker_is_dead_lettered_alone(
    redis_url: str, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    """Crash isolation in the high lane: the killer image is dead-lettered (marked with its lane) after
    ``max_attempts`` deaths alone; the commands and the automatic jobs around it are all answered."""
    settings = queue_settings(redis_url, batch_size=8, batch_wait_ms=50, claim_idle_ms=30_000, max_attempts=2)
    client = await CaptionClient.connect(settings)
    await ensure_group(client.redis, settings.redis_keys)
    lanes = [Priority.HIGH if i % 3 == 0 else Priority.LOW for i in range(12)]
    images = [photo(i) + CRASH_MARK if i == 3 else photo(i) for i in range(12)]
    jobs = [asyncio.create_task(client.caption(img, priority=p, timeout=120)) for img, p in zip(images, lanes,
                                                                                                  strict=True)]
    await asyncio.sleep(0.2)
    worker = spawn_worker(settings, "w0", model="crash")
    deaths = 0
    deadline = time.monotonic() + 120
    while not all(j.done() for j in jobs) and time.monotonic() < deadline:  # a supervisor: restart the dead
        if worker.proc.poll() is not None:
            deaths += 1
            worker = spawn_worker(settings, f"w{deaths}", model="crash")
        await asyncio.sleep(0.1)
    results = await asyncio.gather(*jobs)
    for i, r in enumerate(results):
        if i == 3:
            assert r.error is ErrorCode.DEAD_LETTER, r
        else:
            assert r.ok and r.caption == null_caption(photo(i)), (i, r)
    [dead] = await read_dead_letters(client.redis, settings)
    assert dead.job_id == results[3].job_id and dead.attempts == settings.max_attempts
    [entry] = await client.redis.xrange(settings.redis_keys.dead)
    assert entry[1][b"lane"] == settings.redis_keys.commands.encode()
    assert client.duplicates_dropped == 0
    await client.close()
