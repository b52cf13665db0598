"""An operator's view: /healthz, /readyz and Prometheus /metrics of a serving worker."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from queue_harness import photo, running_worker, wait_for

from captionbot.queue.client import CaptionClient
from captionbot.queue.health import HealthServer
from captionbot.settings import Settings


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _sample(metrics_text: str, name: str, labels: dict[str, str] | None = None) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == name and (labels or {}).items() <= s.labels.items():
                return s.value
    return 0.0


async def test_probes_and_metrics_follow_the_worker(settings: Settings) -> None:
    client = await CaptionClient.connect(settings)
    async with running_worker(settings) as worker:
        health = HealthServer(0, lambda: worker.ready, host="127.0.0.1")
        base = f"http://127.0.0.1:{health.port}"
        try:
            assert (await asyncio.to_thread(_get, base + "/healthz"))[0] == 200
            await wait_for(lambda: worker.ready, what="worker ready")
            assert (await asyncio.to_thread(_get, base + "/readyz"))[0] == 200
            before = (await asyncio.to_thread(_get, base + "/metrics"))[1]
            await asyncio.gather(*(client.caption(photo(i)) for i in range(6)), client.caption(b"not an image"))
            status, after = await asyncio.to_thread(_get, base + "/metrics")
        finally:
            health.close()
    assert status == 200
    ok = "captionbot_jobs_total"
    assert _sample(after, ok, {"outcome": "ok"}) - _sample(before, ok, {"outcome": "ok"}) == 6
    assert _sample(after, ok, {"outcome": "rejected"}) - _sample(before, ok, {"outcome": "rejected"}) == 1
    assert _sample(after, "captionbot_batch_size_count") > _sample(before, "captionbot_batch_size_count")
    assert _sample(after, "captionbot_job_latency_seconds_count") - _sample(
        before, "captionbot_job_latency_seconds_count") == 7
    for name in ("captionbot_queue_depth", "captionbot_reclaims_total", "captionbot_job_failures_total"):
        assert name in after
    await client.close()


async def test_readyz_says_not_ready_until_the_worker_serves() -> None:
    ready = False
    health = HealthServer(0, lambda: ready, host="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{health.port}/readyz"
        assert await asyncio.to_thread(_get, url) == (503, "not ready\n")
        ready = True
        assert await asyncio.to_thread(_get, url) == (200, "ready\n")
    finally:
        health.close()
