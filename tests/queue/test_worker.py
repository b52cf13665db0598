"""The caption worker on a real redis-server: batching, sharing the load, retries and poison images, the real model."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from pathlib import Path

import pytest
from captionbot.inference.null_captioner import POISON_MARK, NullCaptioner, NullOutput, PoisonCaptioner, null_caption
from queue_harness import photo, queue_settings, running_worker, wait_for

from captionbot.formats import ErrorCode, ImageRejected
from captionbot.queue.client import CaptionClient
from captionbot.queue.consumer import Step, next_step
from captionbot.queue.dead_letter import read_dead_letters
from captionbot.settings import Settings


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return queue_settings(redis_url)


async def test_jobs_waiting_together_are_captioned_in_batches_of_batch_size(settings: Settings) -> None:
    client = await CaptionClient.connect(settings)
    pending = [asyncio.create_task(client.caption(photo(i))) for i in range(20)]
    await wait_for(lambda: _xlen_is(client, settings, 20), what="20 jobs queued")
    model = NullCaptioner()
    async with running_worker(settings, model):  # batch_size 8
        results = await asyncio.gather(*pending)
    assert all(r.ok for r in results)
    assert model.batches == [8, 8, 4]
    await client.close()


async def _xlen_is(client: CaptionClient, settings: Settings, n: int) -> bool:
    return await client.redis.xlen(settings.stream) == n


async def test_two_workers_share_the_load(settings: Settings) -> None:
    client = await CaptionClient.connect(settings)
    one, two = NullCaptioner(delay_s=0.02), NullCaptioner(delay_s=0.02)
    async with running_worker(settings, one, name="one"), running_worker(settings, two, name="two"):
        results = await asyncio.gather(*(client.caption(photo(i)) for i in range(60)))
    assert [r.caption for r in results] == [null_caption(photo(i)) for i in range(60)]
    by_worker = {name: sum(r.worker == name for r in results) for name in ("one", "two")}
    assert by_worker["one"] > 0 and by_worker["two"] > 0, by_worker
    assert by_worker["one"] + by_worker["two"] == 60  # each job answered by exactly one of them
    assert client.duplicates_dropped == 0
    await client.close()


async def test_poison_image_is_retried_then_dead_lettered_while_others_are_served(settings: Settings) -> None:
    client = await CaptionClient.connect(settings)
    model = PoisonCaptioner()
    poison = photo(0) + POISON_MARK
    async with running_worker(settings, model):
        results = await asyncio.gather(client.caption(poison), *(client.caption(photo(i)) for i in range(1, 16)))
        after = await client.caption(photo(99))  # the worker still serves after giving up on the poison
    failed, served = results[0], results[1:]
    assert failed.ok is False and failed.error is ErrorCode.DEAD_LETTER
    assert failed.user_message == "Sorry, I could not caption that image."
    assert "poison image" in failed.detail  # the reason, for the log
    assert all(r.ok for r in served) and after.ok
    dead = await read_dead_letters(client.redis, settings)
    assert [(d.job_id, d.attempts) for d in dead] == [(failed.job_id, settings.max_attempts)]
    assert "poison image" in dead[0].reason and dead[0].image_bytes == len(poison)  # kept for inspection
    await client.close()


async def test_jobs_with_different_options_in_one_batch_each_get_their_own(settings: Settings) -> None:
    client = await CaptionClient.connect(settings)
    jobs = [client.caption(photo(i), beam_size=1 + i % 3, heatmap=i % 2 == 0) for i in range(12)]
    async with running_worker(settings):
        results = await asyncio.gather(*jobs)
    assert [r.heatmap_png is not None for r in results] == [i % 2 == 0 for i in range(12)]
    assert [r.caption for r in results] == [null_caption(photo(i)) for i in range(12)]
    await client.close()


def _png(color: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


async def test_worker_with_the_real_model_captions_images_and_refuses_non_images(
    settings: Settings, caption_bundle: Path
) -> None:
    from captionbot.inference.captioner import Captioner

    captioner = Captioner.load(caption_bundle, threads=1)
    client = await CaptionClient.connect(settings)
    red, blue = _png((200, 30, 30)), _png((30, 30, 200))
    async with running_worker(settings, captioner):
        photo_result, with_map, bad = await asyncio.gather(
            client.caption(red), client.caption(blue, heatmap=True), client.caption(b"GIF89a but truncated"),
        )
    direct = captioner.caption_images([red])[0]  # the model called without the queue
    assert photo_result.ok and (photo_result.caption, photo_result.words) == (direct.caption, direct.words)
    assert photo_result.model_version == captioner.model_version
    assert with_map.ok and with_map.heatmap_png and with_map.heatmap_png.startswith(b"\x89PNG")
    assert bad.ok is False and bad.error in {ErrorCode.NOT_AN_IMAGE, ErrorCode.TRUNCATED}
    await client.close()


async def test_an_unreadable_entry_is_set_aside_and_the_worker_keeps_serving(settings: Settings) -> None:
    client = await CaptionClient.connect(settings)
    await client.redis.xadd(settings.stream, {"something": "else"})  # not a caption job
    async with running_worker(settings):
        result = await client.caption(photo(1))
    assert result.ok
    dead = await client.redis.xrange(f"{settings.stream}:dead")
    assert len(dead) == 1 and dead[0][1][b"reason"].startswith(b"invalid job")
    assert await client.redis.xlen(settings.stream) == 0
    await client.close()


class _BrokenOnMark(NullCaptioner):
    """A model with a bug on marked images: it returns no output for them (the worker cannot answer them)."""

    def caption_images(
        self, images: Sequence[bytes], beam_size: int = 3, heatmap: bool = False
    ) -> list[NullOutput | ImageRejected]:
        if any(b"<bug>" in img for img in images):
            return []
        return super().caption_images(images, beam_size, heatmap)


async def test_a_job_that_trips_a_worker_bug_is_dead_lettered_and_the_worker_survives(settings: Settings) -> None:
    client = await CaptionClient.connect(settings)
    async with running_worker(settings, _BrokenOnMark()) as worker:
        buggy = await client.caption(photo(1) + b"<bug>")
        fine = await client.caption(photo(2))
    assert buggy.ok is False and buggy.error is ErrorCode.DEAD_LETTER
    assert fine.ok and worker.jobs_answered == 2
    await client.close()


@pytest.mark.parametrize(("attempt", "failed", "step"), [
    (1, False, Step.RUN), (3, False, Step.RUN), (4, False, Step.DEAD_LETTER),  # 3 earlier deliveries failed
    (1, True, Step.RETRY), (2, True, Step.RETRY), (3, True, Step.DEAD_LETTER),  # this one failed too
])
def test_the_retry_rule_gives_every_job_max_attempts_tries(attempt: int, failed: bool, step: Step) -> None:
    assert next_step(attempt, max_attempts=3, failed=failed) is step


class _FailsFirstTime(NullCaptioner):
    """A model that raises the first time it sees an image and captions it the next time (a passing fault)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[bytes] = set()

    def caption_images(
        self, images: Sequence[bytes], beam_size: int = 3, heatmap: bool = False
    ) -> list[NullOutput | ImageRejected]:
        new = [img for img in images if img not in self.seen]
        self.seen.update(images)
        if new:
            raise RuntimeError("a passing fault")
        return super().caption_images(images, beam_size, heatmap)


async def test_a_job_that_fails_once_is_retried_and_captioned(settings: Settings) -> None:
    client = await CaptionClient.connect(settings)
    async with running_worker(settings, _FailsFirstTime()) as worker:
        result = await client.caption(photo(1))
    assert result.ok and result.caption == null_caption(photo(1))
    assert await read_dead_letters(client.redis, settings) == []
    assert worker.jobs_answered == 1
    await client.close()


async def test_with_one_attempt_allowed_a_failing_job_is_dead_lettered_without_a_retry(redis_url: str) -> None:
    settings = queue_settings(redis_url, max_attempts=1)
    client = await CaptionClient.connect(settings)
    model = PoisonCaptioner()
    async with running_worker(settings, model):
        result = await client.caption(photo(0) + POISON_MARK)
    assert result.error is ErrorCode.DEAD_LETTER
    assert model.batches == [1]  # run once, never again
    assert [d.attempts for d in await read_dead_letters(client.redis, settings)] == [1]
    await client.close()


async def test_a_job_whose_asker_gave_up_is_not_captioned(settings: Settings) -> None:
    """Jobs carry the time their asker stops waiting: a worker that only gets to them later skips the model."""
    client = await CaptionClient.connect(settings)
    gave_up = await client.caption(photo(0), timeout=0.3)  # no worker yet: the asker gives up
    assert gave_up.error is ErrorCode.TIMEOUT
    await asyncio.sleep(1.2)  # past the job's expiry and the clocks' grace
    model = NullCaptioner()
    async with running_worker(settings, model):
        fresh = await client.caption(photo(1))
        await wait_for(lambda: _xlen_is(client, settings, 0), what="the expired job taken off the stream")
    assert fresh.ok
    assert model.batches == [1], "only the fresh job reached the model"
    await client.close()
