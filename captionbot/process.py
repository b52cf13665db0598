"""Start-up and shutdown shared by the long-running commands (``run``, ``bot``, ``worker``, ``standin``).

A command's ``main`` hands its service, an ``async def service(stop) -> int``, to :func:`run_service`, which runs
it on a fresh event loop with a ``stop`` event that SIGTERM and SIGINT set (the service then finishes the work in
hand and returns) and turns the outcome into the process's exit code:

- ``0`` the service stopped when asked;
- ``1`` it failed while running (the error is logged with its traceback), or returned 1 itself;
- ``2`` it could not start: configuration, a missing model bundle or token (:class:`StartupError`, one log line).

:func:`health_endpoints` serves ``/healthz``, ``/readyz`` and ``/metrics`` while the service runs, when a metrics
port is configured; :func:`until_stopped` waits for the stop signal or for a task the service started to end.
Logging is set up once, by ``captionbot.cli``, with :func:`setup_logging`. Standard library only at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CANNOT_START = 0, 1, 2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

Service = Callable[[asyncio.Event], Awaitable[int | None]]


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota (a container's CPU
    limit) when one is set. Kubernetes and Docker show a container every core of the node in ``os.cpu_count()``."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    with contextlib.suppress(OSError, ValueError):
        with open("/sys/fs/cgroup/cpu.max") as f:  # "max 100000" (none) or "200000 100000" (2 CPUs)
            quota, period = f.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    return max(1, cpus)


class StartupError(Exception):
    """The process cannot start; the message says why and what to do (exit code 2, logged without a traceback)."""


def setup_logging(level: str) -> None:
    """One format for every command: time, level, logger, message."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


def run_service(name: str, service: Service) -> int:
    """Run ``service(stop)`` until it returns; SIGTERM or SIGINT set ``stop``. Returns the exit code."""
    try:
        return asyncio.run(_serve(name, service))
    except StartupError as exc:
        log.error("%s cannot start: %s", name, exc)
        return EXIT_CANNOT_START


async def _serve(name: str, service: Service) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, _request_stop, name, sig, stop)
    try:
        return int(await service(stop) or EXIT_OK)
    except StartupError:
        raise
    except Exception:
        log.exception("%s failed", name)
        return EXIT_FAILED
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


def _request_stop(name: str, sig: signal.Signals, stop: asyncio.Event) -> None:
    if not stop.is_set():
        log.info("%s: %s received, stopping", name, sig.name)
    stop.set()


@contextlib.contextmanager
def health_endpoints(port: int, is_ready: Callable[[], bool], registry: Any = None) -> Iterator[None]:
    """Serve the probes and metrics on ``port`` for the block (nothing when ``port`` is 0); ``registry``: the
    Prometheus registry for /metrics (default: this process's)."""
    if not port:
        yield
        return
    from captionbot.queue.health import HealthServer

    server = HealthServer(port, is_ready, registry=registry)
    try:
        yield
    finally:
        server.close()


async def until_stopped(stop: asyncio.Event, *tasks: asyncio.Task[object]) -> bool:
    """Wait until ``stop`` is set or one of ``tasks`` ends (``stop`` is then set too, for the others).

    Logs each task that ended with an error, by its name; returns whether any did."""
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    stop.set()
    failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
    for task in failed:
        log.error("%s stopped: %s", task.get_name(), task.exception())
    return bool(failed)
