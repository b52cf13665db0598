"""Helpers for the queue and worker tests: settings on a private stream, in-process workers, real worker processes.

Imported by tests/queue and tests/bot (``tests/`` is on sys.path through the root conftest)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from captionbot.inference.null_captioner import NullCaptioner

from captionbot.queue.worker import CaptionModel, Worker
from captionbot.settings import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def photo(i: int) -> bytes:
    """Bytes the null model accepts as image number ``i`` (it checks the PNG signature only)."""
    return b"\x89PNG\r\n\x1a\n" + f"photo {i}".encode() * 4


def queue_settings(redis_url: str | None, **overrides: object) -> Settings:
    """Fast timings for tests: jobs are reclaimed after 300 ms, dead-lettered after 3 attempts."""
    base: dict[str, object] = dict(
        redis_url=redis_url, stream=f"test:{uuid.uuid4().hex[:8]}:jobs", batch_size=8, batch_wait_ms=10,
        claim_idle_ms=300, max_attempts=3, result_timeout_s=20, queue_maxlen=1000, metrics_port=0,
    )
    base.update(overrides)
    return load_settings(**base)



@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, captioner: CaptionModel | None = None, name: str = "w1"
) -> AsyncIterator[Worker]:
    """A Worker serving in this event loop until the block ends (then stopped as by SIGTERM)."""
    worker = Worker(settings, captioner or NullCaptioner(), name=name)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.serve(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


class WorkerProcess:
    """A real ``captionbot worker`` process running the null test model."""

    def __init__(self, settings: Settings, name: str, delay_ms: float, model: str = "null",
                 args: Sequence[str] = (), env_extra: dict[str, str] | None = None, log_level: str = "WARNING") -> None:
        env = dict(os.environ, CAPTIONBOT_REDIS_URL=settings.redis_url.get_secret_value() if settings.redis_url else "",
                   CAPTIONBOT_STREAM=settings.stream, CAPTIONBOT_BATCH_SIZE=str(settings.batch_size),
                   CAPTIONBOT_BATCH_WAIT_MS=str(settings.batch_wait_ms),
                   CAPTIONBOT_CLAIM_IDLE_MS=str(settings.claim_idle_ms),
                   CAPTIONBOT_MAX_ATTEMPTS=str(settings.max_attempts), CAPTIONBOT_METRICS_PORT="0")
        env.update(env_extra or {})
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "captionbot.cli", "--log-level", log_level, "worker", "--name", name,
             "--test-model", model, "--test-model-delay-ms", str(delay_ms), *args],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        out, _ = self.proc.communicate(timeout=10)
        return out.decode(errors="replace")


async def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll an async or sync condition until it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
