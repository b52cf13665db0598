"""Bounded memory: a job over the image cap is refused as too large at once, and the job stream holds at most
``queue_max_bytes`` of jobs (BUSY beyond), the count going back down as jobs are answered, refused or set aside."""

from __future__ import annotations

import asyncio
import time

from captionbot.inference.null_captioner import POISON_MARK, NullCaptioner, PoisonCaptioner
from queue_harness import photo, queue_settings, running_worker, wait_for

from captionbot.formats import ErrorCode
from captionbot.queue.client import CaptionClient
from captionbot.queue.dead_letter import read_dead_letters


def _image(i: int, size: int) -> bytes:
    return photo(i) + b"x" * (size - len(photo(i)))


async def test_an_image_over_the_cap_is_too_large_at_once_and_never_queued(redis_url: str) -> None:
    settings = queue_settings(redis_url, max_image_bytes=50_000)
    client = await CaptionClient.connect(settings)
    started = time.monotonic()
    result = await client.caption(_image(1, 50_001), timeout=5)
    assert result.error is ErrorCode.TOO_LARGE and "over 50000" in result.detail
    assert result.user_message == "That file is too large for me to caption."
    assert time.monotonic() - started < 1.0
    assert await client.redis.xlen(settings.stream) == 0
    await client.close()


async def test_the_stream_holds_at_most_its_byte_budget_and_frees_it_as_jobs_are_answered(redis_url: str) -> None:
    settings = queue_settings(redis_url, queue_max_bytes=40_000, max_attempts=1)
    client = await CaptionClient.connect(settings)
    waiting = [asyncio.create_task(client.caption(_image(i, 12_000))) for i in range(3)]
    await wait_for(lambda: _xlen_is(client, settings.stream, 3), what="three jobs queued")
    started = time.monotonic()
    refused = await client.caption(_image(3, 12_000), timeout=5)  # 4 x 12 kB > 40 kB, though 4 < queue_maxlen
    assert refused.error is ErrorCode.BUSY and "bytes" in refused.detail
    assert time.monotonic() - started < 1.0
    assert await client.redis.xlen(settings.stream) == 3
    used = int(await client.redis.get(settings.redis_keys.queued_bytes))
    assert 36_000 <= used <= 40_000
    alone = await client.caption(_image(9, 41_000), timeout=5)  # could never fit: too large, not busy
    assert alone.error is ErrorCode.TOO_LARGE

    async with running_worker(settings, PoisonCaptioner()):
        assert all(r.ok for r in await asyncio.gather(*waiting))
        # answered, refused (not an image) and dead-lettered jobs all give their bytes back
        results = await asyncio.gather(client.caption(_image(4, 12_000)), client.caption(b"x" * 12_000),
                                       client.caption(_image(5, 12_000) + POISON_MARK))
        assert [r.error for r in results] == [None, ErrorCode.NOT_AN_IMAGE, ErrorCode.DEAD_LETTER]
        assert int(await client.redis.get(settings.redis_keys.queued_bytes)) == 0
    async with running_worker(settings, NullCaptioner()):
        again = await asyncio.gather(*(client.caption(_image(i, 12_000)) for i in range(3)))
    assert all(r.ok for r in again)
    await client.close()


async def _xlen_is(client: CaptionClient, stream: str, n: int) -> bool:
    return await client.redis.xlen(stream) == n


async def test_dead_letters_keep_small_images_and_only_the_size_of_large_ones(redis_url: str) -> None:
    settings = queue_settings(redis_url, max_attempts=1)
    client = await CaptionClient.connect(settings)
    small, large = _image(1, 2_000) + POISON_MARK, _image(2, 1_500_000) + POISON_MARK
    async with running_worker(settings, PoisonCaptioner()):
        results = await asyncio.gather(client.caption(small), client.caption(large))
    assert [r.error for r in results] == [ErrorCode.DEAD_LETTER] * 2
    dead = {d.job_id: d for d in await read_dead_letters(client.redis, settings)}
    assert dead[results[0].job_id].image_bytes == len(small) and dead[results[1].job_id].image_bytes == len(large)
    kept = {f[b"job_id"].decode(): f[b"image"] for _, f in await client.redis.xrange(settings.redis_keys.dead)}
    assert kept[results[0].job_id] == small and kept[results[1].job_id] == b""
    await client.close()
