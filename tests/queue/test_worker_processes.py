"""``captionbot worker --processes N`` (``CAPTIONBOT_WORKER_PROCESSES``): N worker processes, each a consumer of the
stream under its own name, one supervisor that restarts a process that dies, passes SIGTERM on and serves the
probes and the processes' metrics added up. Real processes, real Redis, the null test model."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from captionbot.inference.null_captioner import CRASH_MARK, null_caption
from queue_harness import REPO_ROOT, WorkerProcess, photo, queue_settings, wait_for

from captionbot.formats import ErrorCode
from captionbot.queue.client import CaptionClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def _pids(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"worker process \S+ started \(pid (\d+)", output)]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_two_processes_each_serve_jobs_and_sigterm_stops_both_losing_nothing(
    redis_url: str, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    settings = queue_settings(redis_url, batch_size=4, batch_wait_ms=5)
    client = await CaptionClient.connect(settings)
    port = free_port()
    worker = spawn_worker(settings, "wp", delay_ms=40, args=["--processes", "2"], log_level="INFO",
                          env_extra={"CAPTIONBOT_METRICS_PORT": str(port)})
    await wait_for(lambda: _get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 60, "both worker processes ready")

    first = await asyncio.gather(*(client.caption(photo(i), timeout=60) for i in range(40)))
    assert all(r.ok and r.caption == null_caption(photo(i)) for i, r in enumerate(first))
    assert {r.worker for r in first} == {"wp-0", "wp-1"}  # both processes took jobs from the one stream
    status, metrics = _get(f"http://127.0.0.1:{port}/metrics")  # the supervisor adds the processes' counts up
    assert status == 200
    assert re.search(r'captionbot_jobs_total\{outcome="ok"\} 40\.0', metrics), metrics[-2000:]

    # SIGTERM while jobs are in flight: each process answers the batch in hand and exits; the rest stay queued
    second = [asyncio.create_task(client.caption(photo(100 + i), timeout=60)) for i in range(40)]
    await wait_for(lambda: sum(t.done() for t in second) >= 4, 30, "the second wave to be under way")
    worker.proc.send_signal(signal.SIGTERM)
    out = worker.output()
    assert worker.proc.returncode == 0, out
    pids = _pids(out)
    assert len(pids) == 2 and all(_gone(p) for p in pids), out  # no worker process outlives the supervisor
    assert "all 2 processes stopped" in out
    assert not await client.redis.hgetall(client.keys.workers)  # both said goodbye (stats shows no stale worker)

    spawn_worker(settings, "after")  # a fresh worker finishes what was not started: nothing was lost
    results = await asyncio.gather(*second)
    assert all(r.ok and r.caption == null_caption(photo(100 + i)) for i, r in enumerate(results))
    assert {r.worker for r in results} <= {"wp-0", "wp-1", "after"}
    assert client.duplicates_dropped == 0  # and nothing was answered twice
    await client.close()


async def test_a_process_that_dies_is_restarted_under_its_name_and_no_healthy_job_is_lost(
    redis_url: str, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    """The crash model SIGKILLs its own process on a marked image: the supervisor starts it again (the crash image is
    dead-lettered after max_attempts deaths alone, as with single workers restarted by their orchestrator)."""
    settings = queue_settings(redis_url, batch_size=4, batch_wait_ms=20, claim_idle_ms=30_000, max_attempts=2)
    client = await CaptionClient.connect(settings)
    worker = spawn_worker(settings, "wc", model="crash", args=["--processes", "2"], log_level="INFO")
    assert await client.workers_alive(wait_s=60)
    images = [photo(i) + CRASH_MARK if i == 3 else photo(i) for i in range(20)]
    results = await asyncio.gather(*(client.caption(img, timeout=90) for img in images))

    for i, r in enumerate(results):
        if i == 3:
            assert r.error is ErrorCode.DEAD_LETTER, r
        else:
            assert r.ok and r.caption == null_caption(photo(i)), (i, r)
    assert worker.proc.poll() is None  # the supervisor itself carries on
    assert client.duplicates_dropped == 0
    worker.proc.send_signal(signal.SIGTERM)
    out = worker.output()
    assert worker.proc.returncode == 0, out
    deaths = re.findall(r"worker process (wc-\d) \(pid \d+\) died \(signal SIGKILL\) after \d+ s: restarting it", out)
    assert len(deaths) >= settings.max_attempts, out  # it died alone max_attempts times (and maybe once in a batch)
    restarted = re.findall(r"worker process (wc-\d) started", out)[2:]
    assert len(restarted) >= len(deaths) - 1 and set(restarted) <= set(deaths), out  # under the same name (the last
    # restart may still have been waiting out its delay at SIGTERM)
    await client.close()


def _worker_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "captionbot.cli", "worker", *args], cwd=REPO_ROOT,
                          env=dict(os.environ, **(env or {})), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("flag", "env"), [(["--processes", "0"], {}), (["--processes", "two"], {}),
                                           ([], {"CAPTIONBOT_WORKER_PROCESSES": "-1"})])
def test_a_bad_process_count_is_one_clear_line_and_exit_2(flag: list[str], env: dict[str, str]) -> None:
    proc = _worker_cli(*flag, "--test-model", "null", env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "CAPTIONBOT_WORKER_PROCESSES" in lines[0], proc.stderr


def test_auto_means_one_process_per_cpu_and_threads_are_shared_out(redis_url: str) -> None:
    from captionbot.inference.worker_processes import threads_per_process

    from captionbot.process import available_cpus
    from captionbot.settings import load_settings

    auto = load_settings(worker_processes="auto")
    assert auto.worker_processes == available_cpus()
    assert threads_per_process(auto) == 1
    assert threads_per_process(load_settings(worker_processes=2, threads=8)) == 4
    assert threads_per_process(load_settings(worker_processes=4, threads=2)) == 1


def test_processes_that_cannot_start_stop_the_worker_with_exit_2(redis_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    proc = _worker_cli("--processes", "2", env={"CAPTIONBOT_REDIS_URL": redis_url,
                                                "CAPTIONBOT_BUNDLE": str(tmp_path / "no-bundle")})
    assert proc.returncode == 2, proc.stderr
    assert "no model bundle at" in proc.stderr and "cannot start (exit code 2" in proc.stderr, proc.stderr
    assert "restarting" not in proc.stderr  # not a crash loop
    assert time.monotonic() - started < 60
