"""The bot's side of the queue against a real redis-server: every job answered once, to the instance that asked."""

from __future__ import annotations

import asyncio
import time

from captionbot.inference.null_captioner import NullCaptioner, null_caption
from queue_harness import photo, queue_settings, running_worker, wait_for

from captionbot.formats import ErrorCode
from captionbot.queue.client import CaptionClient
from captionbot.settings import Settings


async def test_n_jobs_get_n_results_each_exactly_once(settings: Settings) -> None:
    client = await CaptionClient.connect(settings, instance_id="bot-a")
    async with running_worker(settings):
        results = await asyncio.gather(*(client.caption(photo(i), context={"n": i}) for i in range(40)))
    assert [r.ok for r in results] == [True] * 40
    assert [r.caption for r in results] == [null_caption(photo(i)) for i in range(40)]  # each got its own caption
    assert [r.context["n"] for r in results] == list(range(40))
    assert len({r.job_id for r in results}) == 40
    assert client.duplicates_dropped == 0  # no result was published twice
    assert await client.redis.xlen(settings.stream) == 0  # answered jobs leave the stream
    assert (await client.redis.xpending(settings.stream, settings.group))["pending"] == 0
    await client.close()


async def test_each_bot_instance_receives_only_its_own_results(settings: Settings) -> None:
    a = await CaptionClient.connect(settings, instance_id="bot-a")
    b = await CaptionClient.connect(settings, instance_id="bot-b")
    async with running_worker(settings):
        ra, rb = await asyncio.gather(
            asyncio.gather(*(a.caption(photo(i)) for i in range(10))),
            asyncio.gather(*(b.caption(photo(100 + i)) for i in range(10))),
        )
    assert [r.caption for r in ra] == [null_caption(photo(i)) for i in range(10)]
    assert [r.caption for r in rb] == [null_caption(photo(100 + i)) for i in range(10)]
    assert a.duplicates_dropped == b.duplicates_dropped == 0  # neither saw the other's results
    await a.close()
    await b.close()


async def test_full_queue_answers_busy_at_once_and_does_not_grow(redis_url: str) -> None:
    settings = queue_settings(redis_url, queue_maxlen=5)
    client = await CaptionClient.connect(settings)
    waiting = [asyncio.create_task(client.caption(photo(i))) for i in range(5)]  # no worker yet: they wait
    await wait_for(lambda: _xlen_is(client, settings, 5), what="5 jobs queued")

    started = time.monotonic()
    refused = await client.caption(photo(99))
    assert refused.ok is False and refused.error is ErrorCode.BUSY
    assert "busy" in refused.user_message.lower()
    assert time.monotonic() - started < 0.5  # at once, not after a timeout
    assert await client.redis.xlen(settings.stream) == 5  # the stream did not grow

    async with running_worker(settings):  # the queued jobs are still answered
        assert all(r.ok for r in await asyncio.gather(*waiting))
    await client.close()


async def _xlen_is(client: CaptionClient, settings: Settings, n: int) -> bool:
    return await client.redis.xlen(settings.stream) == n


async def test_no_worker_means_timeout_and_a_late_result_is_not_delivered_twice(settings: Settings) -> None:
    client = await CaptionClient.connect(settings)
    late = await client.caption(photo(1), timeout=0.3)
    assert late.ok is False and late.error is ErrorCode.TIMEOUT
    async with running_worker(settings):  # a worker starts later and answers the old job: dropped, not delivered
        await wait_for(lambda: client.duplicates_dropped == 1, what="late result dropped")
        fresh = await client.caption(photo(2))
    assert fresh.ok and fresh.caption == null_caption(photo(2))
    await client.close()


async def test_image_the_model_refuses_is_answered_with_its_reason_and_not_retried(settings: Settings) -> None:
    model = NullCaptioner()
    client = await CaptionClient.connect(settings)
    async with running_worker(settings, model):
        bad = await client.caption(b"%PDF-1.7 not an image")
        good = await client.caption(photo(1))
    assert bad.ok is False and bad.error is ErrorCode.NOT_AN_IMAGE
    assert bad.user_message == "That file is not an image I can read."
    assert good.ok
    assert model.batches == [1, 1]  # the refused image was run once, never retried
    await client.close()


async def test_heatmap_comes_back_only_when_asked(settings: Settings) -> None:
    client = await CaptionClient.connect(settings)
    async with running_worker(settings):
        plain, with_map = await asyncio.gather(client.caption(photo(1)), client.caption(photo(2), heatmap=True))
    assert plain.heatmap_png is None
    assert with_map.heatmap_png is not None and with_map.heatmap_png.startswith(b"\x89PNG")
    await client.close()


async def test_stats_report_depth_workers_model_and_latency(settings: Settings) -> None:
    client = await CaptionClient.connect(settings)
    async with running_worker(settings, name="stats-worker"):
        await asyncio.gather(*(client.caption(photo(i)) for i in range(5)))
        stats = await client.stats()
    assert stats["queue_depth"] == 0 and stats["pending"] == 0
    assert stats["workers"] == 1
    assert stats["model_version"] == NullCaptioner.model_version
    assert stats["median_latency_ms"] is not None and stats["median_latency_ms"] > 0
    await client.close()


async def test_embedded_queue_runs_bot_and_worker_in_one_process() -> None:
    settings = queue_settings(None)  # no Redis configured: the in-process backend
    client = await CaptionClient.connect(settings)
    async with running_worker(settings):
        results = await asyncio.gather(*(client.caption(photo(i)) for i in range(10)))
    assert [r.caption for r in results] == [null_caption(photo(i)) for i in range(10)]
    assert client.duplicates_dropped == 0
    await client.close()


def test_queue_and_worker_never_import_torch_or_discord() -> None:
    import subprocess
    import sys

    code = ("import sys, captionbot.queue.client, captionbot.queue.health, captionbot.queue.worker, "
            "captionbot.inference.worker_cli, captionbot.inference.null_captioner; "
            "print(sorted(m for m in ('torch', 'discord', 'onnxruntime', 'fakeredis') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
