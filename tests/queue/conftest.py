"""Fixtures of the queue tests (helpers are in ``tests/queue_harness.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from queue_harness import WorkerProcess, queue_settings

from captionbot.settings import Settings


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """Settings on a private stream of the session redis-server, with test timings."""
    return queue_settings(redis_url)


@pytest.fixture
def spawn_worker() -> Iterator[Callable[..., WorkerProcess]]:
    procs: list[WorkerProcess] = []

    def spawn(settings: Settings, name: str, delay_ms: float = 0.0, model: str = "null",
              **kwargs: object) -> WorkerProcess:
        p = WorkerProcess(settings, name, delay_ms, model, **kwargs)  # type: ignore[arg-type]
        procs.append(p)
        return p

    yield spawn
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
        p.proc.wait(timeout=10)
