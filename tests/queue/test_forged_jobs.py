"""The worker does not trust the stream: every job field is checked against the schema and its bounds, an invalid
job is dead-lettered with its reason (its requester told when it can be), and attempts are Redis's to count."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from captionbot.inference.null_captioner import POISON_MARK, NullCaptioner, PoisonCaptioner, null_caption
from queue_harness import photo, queue_settings, running_worker, wait_for
from redis.asyncio import Redis

from captionbot.formats import MAX_BEAM_SIZE, CaptionJob, CaptionResult, ErrorCode
from captionbot.queue.dead_letter import read_dead_letters
from captionbot.queue.streams import ensure_group
from captionbot.settings import Settings


def _fields(settings: Settings, job_id: str, **changes: Any) -> dict[str, Any]:
    """A valid job's fields for the requester "forger", with some changed (None: the field left out)."""
    job = CaptionJob(image=photo(int(job_id[-1], 16)), reply_to=settings.redis_keys.results("forger"), job_id=job_id)
    fields: dict[str, Any] = dict(job.to_fields())
    for k, v in changes.items():
        if v is None:
            fields.pop(k)
        else:
            fields[k] = v
    return fields


async def _results(redis: Redis, settings: Settings) -> dict[str, CaptionResult]:
    entries = await redis.xrange(settings.redis_keys.results("forger"))
    return {r.job_id: r for r in (CaptionResult.from_fields(f) for _, f in entries)}


FORGED: dict[str, tuple[dict[str, Any], str]] = {  # job id -> (changed fields, what the dead-letter reason says)
    "a1": ({"v": "2"}, "version '2'"),
    "a2": ({"v": None}, "no job format version"),
    "a3": ({"beam_size": "2000"}, f"1..{MAX_BEAM_SIZE}"),
    "a4": ({"beam_size": "-1"}, "beam_size"),
    "a5": ({"heatmap": "yes"}, "heatmap"),
    "a6": ({"context": json.dumps({"pad": "x" * 10_000})}, "context"),
    "a7": ({"context": "[1, 2]"}, "context"),
    "a8": ({"created_at": "nan"}, "created_at"),
    "a9": ({"image": b"\x89PNG" + b"x" * 5000}, "image of 5004 bytes is over 4096"),
}


async def test_jobs_with_forged_or_out_of_bounds_fields_are_dead_lettered_with_a_reason_and_never_run(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = queue_settings(redis_url, max_image_bytes=4096)
    redis = Redis.from_url(redis_url)
    await ensure_group(redis, settings.redis_keys)
    for job_id, (changes, _) in FORGED.items():
        await redis.xadd(settings.stream, _fields(settings, job_id, **changes))
    await redis.xadd(settings.stream, _fields(settings, "b1"))  # a valid one among them
    model = NullCaptioner()
    with caplog.at_level(logging.INFO):
        async with running_worker(settings, model):
            await wait_for(lambda: _count(redis, settings, len(FORGED) + 1), what="every job answered")
    results = await _results(redis, settings)
    assert results["b1"].ok and results["b1"].caption == null_caption(photo(0xB1 & 0xF))
    for job_id, (_, why) in FORGED.items():  # each requester is told, with the reason in the detail
        assert results[job_id].error is ErrorCode.DEAD_LETTER, job_id
        assert why in results[job_id].detail, (job_id, results[job_id].detail)
    dead = {d.job_id: d for d in await read_dead_letters(redis, settings)}
    assert set(dead) == set(FORGED) and all(d.reason.startswith("invalid job: ") for d in dead.values())
    assert model.batches == [1]  # only the valid job reached the model
    assert await redis.xlen(settings.stream) == 0
    assert not [r for r in caplog.records if r.exc_info]  # a reason per job, never a traceback
    await redis.aclose()


async def _count(redis: Redis, settings: Settings, n: int) -> bool:
    return await redis.xlen(settings.redis_keys.results("forger")) >= n


async def test_a_reply_to_that_is_not_a_result_stream_is_dead_lettered_not_lost(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A reply_to of the wrong type of key, or outside the result streams, never makes a job vanish."""
    settings = queue_settings(redis_url)
    redis = Redis.from_url(redis_url)
    await ensure_group(redis, settings.redis_keys)
    wrong_type = settings.redis_keys.results("hash-here")
    await redis.hset(wrong_type, "a", "b")  # a hash where a result stream should be
    await redis.xadd(settings.stream, _fields(settings, "c1", reply_to=wrong_type))
    await redis.xadd(settings.stream, _fields(settings, "c2", reply_to=settings.redis_keys.workers))
    await redis.xadd(settings.stream, _fields(settings, "c3", reply_to="elsewhere:results:x"))
    with caplog.at_level(logging.INFO):
        async with running_worker(settings, NullCaptioner()):
            await wait_for(lambda: _dead_count(redis, settings, 3), what="three dead letters")
            assert await redis.xlen(settings.stream) == 0
    dead = {d.job_id: d.reason for d in await read_dead_letters(redis, settings)}
    assert "is not a stream" in dead["c1"]
    assert "reply_to is not a result stream" in dead["c2"] and "reply_to is not a result stream" in dead["c3"]
    assert await redis.type(settings.redis_keys.workers) in (b"none", b"hash")  # nothing written into it
    assert await redis.hgetall(wrong_type) == {b"a": b"b"}
    assert not [r for r in caplog.records if r.exc_info]
    await redis.aclose()


async def _dead_count(redis: Redis, settings: Settings, n: int) -> bool:
    return await redis.xlen(settings.redis_keys.dead) >= n


async def test_an_attempt_field_in_the_payload_cannot_dead_letter_a_healthy_job(redis_url: str) -> None:
    settings = queue_settings(redis_url)
    redis = Redis.from_url(redis_url)
    await ensure_group(redis, settings.redis_keys)
    await redis.xadd(settings.stream, _fields(settings, "d1", attempt="99"))
    async with running_worker(settings, NullCaptioner()):
        await wait_for(lambda: _count(redis, settings, 1), what="the job answered")
    result = (await _results(redis, settings))["d1"]
    assert result.ok and result.caption == null_caption(photo(1))
    await redis.aclose()


class TimedPoison(PoisonCaptioner):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def caption_images(self, images: Any, beam_size: int = 3, heatmap: bool = False) -> Any:
        self.times.append(time.monotonic())
        return super().caption_images(images, beam_size, heatmap)


async def test_attempts_are_counted_in_redis_and_retries_back_off(redis_url: str) -> None:
    """A failing job runs max_attempts times, spaced by the doubling back-off, counted by Redis."""
    settings = queue_settings(redis_url, claim_idle_ms=2000, retry_backoff_ms=200, max_attempts=3)
    redis = Redis.from_url(redis_url)
    await ensure_group(redis, settings.redis_keys)
    fields = _fields(settings, "e1", image=photo(1) + POISON_MARK)
    await redis.xadd(settings.stream, fields)
    model = TimedPoison()
    async with running_worker(settings, model):
        await wait_for(lambda: _count(redis, settings, 1), what="the job answered", timeout=15)
    result = (await _results(redis, settings))["e1"]
    assert result.error is ErrorCode.DEAD_LETTER and model.batches == [1, 1, 1]
    gaps = [b - a for a, b in zip(model.times, model.times[1:], strict=False)]
    # waits of 200 then 400 ms: not three runs at once, not the 2 s reclaim idle time
    assert 0.18 <= gaps[0] < 1.5 and 0.38 <= gaps[1] < 1.9, gaps
    dead = await read_dead_letters(redis, settings)
    assert [(d.job_id, d.attempts) for d in dead] == [("e1", 3)]
    await redis.aclose()
