"""``captionbot worker`` as several processes (``CAPTIONBOT_WORKER_PROCESSES`` / ``--processes``): one supervisor and
N worker processes, each an ordinary worker (its own model, its own consumer in the group, named ``NAME-0`` ...
``NAME-{N-1}``) with ``threads // N`` onnxruntime threads (at least 1; threads 0: the CPUs this container may use).

Why: on a CPU, a worker's per-image Python work (JPEG decode and resize, the beam search's bookkeeping) runs on one
core whatever onnxruntime's thread count, so one process of 2 threads uses 2 cores only while the encoder runs.
Two processes of 1 thread keep both busy (bench/served_processes.py; docs/inference.md, "Worker processes").

The supervisor loads no model. It

- serves ``/healthz``, ``/readyz`` (ready when every worker process is) and ``/metrics`` (the processes' metrics
  added up, Prometheus multiprocess mode) on the metrics port, when one is set; the processes serve none;
- passes SIGTERM / SIGINT on to every worker process, which finishes and answers the batch in hand and exits, then
  exits 0 itself (1 if one did not stop cleanly; a process still busy after ``STOP_GRACE_S`` is killed and its
  jobs are taken back by the others after ``CAPTIONBOT_CLAIM_IDLE_MS``: nothing is lost, a job is at worst late);
- **restarts** a worker process that dies (a crash, an out-of-memory kill), under the same consumer name, so it
  takes its own unanswered jobs back at once; after a death within ``QUICK_DEATH_S`` of starting it waits 1, 2, 4
  ... up to 30 s before the next start (a crash loop does not spin). A worker process that *cannot start* (exit 2:
  no bundle, a bundle that fails its hash check or self-test) is not restarted: the supervisor stops the others
  and exits 2 with the reason in the log, as a single worker would.

Standard library only at import; each worker process is spawned (a fresh interpreter, as ``captionbot worker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from typing import TYPE_CHECKING, Any

from captionbot.process import EXIT_CANNOT_START, EXIT_FAILED, EXIT_OK, available_cpus, setup_logging

if TYPE_CHECKING:
    from captionbot.settings import Settings

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often the supervisor looks at its processes
STOP_GRACE_S = 120.0  # after SIGTERM, a worker process gets this long to answer its batch before it is killed
QUICK_DEATH_S = 30.0  # a process that dies sooner than this after starting is restarted with a growing delay
MAX_RESTART_DELAY_S = 30.0
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # numpy's and OpenMP's pools


def threads_per_process(settings: Settings) -> int:
    """Each process's share of ``settings.threads`` (0: of the CPUs), at least 1."""
    total = settings.threads or available_cpus()
    return max(1, total // settings.worker_processes)


@dataclass
class _Slot:
    """One worker process and what the supervisor knows of it."""

    index: int
    name: str
    ready: Synchronized[int] = field(repr=False)
    proc: BaseProcess | None = None
    started: float = 0.0
    deaths: int = 0
    next_start: float = 0.0


class Supervisor:
    """Starts, watches and stops the worker processes (see the module's docstring)."""

    def __init__(self, settings: Settings, name: str, test_model: str | None = None, delay_s: float = 0.0,
                 log_level: str = "INFO") -> None:
        self.per_process = threads_per_process(settings)
        self.settings = settings.model_copy(update={"worker_processes": 1, "threads": self.per_process,
                                                    "metrics_port": 0})
        self.metrics_port = settings.metrics_port
        self.test_model, self.delay_s, self.log_level = test_model, delay_s, log_level
        self.ctx = mp.get_context("spawn")  # a fresh interpreter each: no forked event loop or onnxruntime pool
        self.slots = [_Slot(i, f"{name}-{i}", self.ctx.Value("b", 0)) for i in range(settings.worker_processes)]
        self.exit_code = EXIT_OK

    def ready(self) -> bool:
        return all(s.proc is not None and s.proc.is_alive() and s.ready.value for s in self.slots)

    def _start(self, slot: _Slot) -> None:
        slot.ready.value = 0
        slot.proc = self.ctx.Process(
            target=_worker_process, name=slot.name,
            args=(self.settings, slot.name, self.test_model, self.delay_s, self.log_level, slot.ready, os.getpid()),
        )
        slot.proc.start()
        slot.started = time.monotonic()
        log.info("worker process %s started (pid %d, %d onnxruntime thread%s)", slot.name, slot.proc.pid,
                 self.per_process, "s" if self.per_process > 1 else "")

    async def serve(self, stop: asyncio.Event) -> int:
        from captionbot.process import health_endpoints

        log.info("worker: %d processes of %d thread%s each", len(self.slots), self.per_process,
                 "s" if self.per_process > 1 else "")
        metrics = _process_metrics(bool(self.metrics_port))
        with metrics as registry, health_endpoints(self.metrics_port, self.ready, registry):
            for var in THREAD_VARS:  # each process's numpy/OpenMP pools no wider than its onnxruntime share
                os.environ.setdefault(var, str(self.per_process))
            for slot in self.slots:
                self._start(slot)
            try:
                while not stop.is_set():
                    self._watch()
                    if self.exit_code == EXIT_CANNOT_START:
                        break
                    await _wait(stop, POLL_S)
            finally:
                await self._stop_all()
        return self.exit_code

    def _watch(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            proc = slot.proc
            if proc is None:
                if now >= slot.next_start:
                    self._start(slot)
                continue
            if proc.is_alive():
                continue
            code = proc.exitcode
            _forget_process_metrics(proc.pid)
            slot.proc = None
            if code == EXIT_CANNOT_START:
                log.error("worker process %s cannot start (exit code 2, its reason is logged above): stopping",
                          slot.name)
                self.exit_code = EXIT_CANNOT_START
                return
            lived = now - slot.started
            slot.deaths = slot.deaths + 1 if lived < QUICK_DEATH_S else 0
            delay = min(MAX_RESTART_DELAY_S, 2.0 ** (slot.deaths - 1)) if slot.deaths else 0.0
            slot.next_start = now + delay
            log.error("worker process %s (pid %d) died (%s) after %.0f s: restarting it%s", slot.name, proc.pid,
                      _describe_exit(code), lived, f" in {delay:.0f} s" if delay else "")

    async def _stop_all(self) -> None:
        """SIGTERM to every process, then wait for each (killing one that overstays ``STOP_GRACE_S``)."""
        alive = [s for s in self.slots if s.proc is not None and s.proc.is_alive()]
        for slot in alive:
            assert slot.proc is not None
            slot.proc.terminate()  # SIGTERM: the worker finishes and answers its batch, then exits 0
        deadline = time.monotonic() + STOP_GRACE_S
        for slot in alive:
            assert slot.proc is not None
            while slot.proc.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(POLL_S / 2)
            if slot.proc.is_alive():
                log.error("worker process %s still busy %.0f s after SIGTERM: killing it (its jobs are taken back "
                          "by the others)", slot.name, STOP_GRACE_S)
                slot.proc.kill()
                slot.proc.join()
            code = slot.proc.exitcode
            if code not in (EXIT_OK, -signal.SIGTERM):  # SIGTERM before it served (loading its model) is clean too
                log.error("worker process %s stopped with %s", slot.name, _describe_exit(code))
                if self.exit_code == EXIT_OK:
                    self.exit_code = EXIT_FAILED
            _forget_process_metrics(slot.proc.pid)
        log.info("worker: all %d processes stopped", len(self.slots))


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def _worker_process(settings: Settings, name: str, test_model: str | None, delay_s: float, log_level: str,
                    ready: Synchronized[int], parent: int) -> None:
    """A worker process: ``captionbot worker`` with one consumer, reporting readiness to the supervisor."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which passes SIGTERM on
    setup_logging(log_level)
    from captionbot.inference.worker_cli import serve

    from captionbot.process import run_service

    async def service(stop: asyncio.Event) -> int:
        watch = asyncio.create_task(_watch_parent(parent, stop))
        try:
            return await serve(settings, stop, name, test_model, delay_s, ready_flag=ready)
        finally:
            watch.cancel()

    raise SystemExit(run_service(f"worker {name}", service))


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Stop (finishing the batch in hand) if the supervisor is gone: a worker process never outlives it."""
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("the worker supervisor (pid %d) is gone: stopping", parent)
            stop.set()
            return
        await asyncio.sleep(1.0)


class _process_metrics:
    """Prometheus multiprocess mode for the block (when ``wanted``: a metrics port is set): the worker processes write
    their metrics to files in a directory (``PROMETHEUS_MULTIPROC_DIR``, made here unless set), and the registry
    yielded adds them up for ``/metrics``."""

    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted
        self.made: str | None = None

    def __enter__(self) -> Any:
        if not self.wanted:
            return None
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not path:
            path = self.made = tempfile.mkdtemp(prefix="captionbot-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = path  # inherited by the processes, read when they import
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)
        return registry

    def __exit__(self, *exc: object) -> None:
        if self.made:
            shutil.rmtree(self.made, ignore_errors=True)
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def _forget_process_metrics(pid: int | None) -> None:
    """A dead process's live gauges leave /metrics (its counters and histograms stay in the totals)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and pid:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, path)


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()
