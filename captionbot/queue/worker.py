"""The caption worker: serves the job stream in batches with a captioner, answering every job exactly once.

One loop: read a batch (reclaimed jobs first, then new ones, up to ``batch_size`` or ``batch_wait_ms``), run the
model on it in a thread (grouped by beam size, heatmap and variants), publish each result and acknowledge it in
one atomic step. Failure handling follows :mod:`captionbot.queue` (at least once, reclaimed after, dead-lettered
after); whether a failed job is retried or dead-lettered is the consumer's call (:func:`~.consumer.next_step`).
Stopping (SIGTERM) finishes the batch in hand, answers it, and returns.

The model is anything with the :class:`CaptionModel` shape, handed in by the caller (``captionbot worker`` loads
``captionbot.inference.captioner.Captioner``): this module imports neither onnxruntime nor torch nor discord, so
the bot image, which has no ``inference/``, can import the whole queue package.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

from redis.asyncio import Redis

from captionbot.formats import DEFAULT_BEAM_SIZE, CaptionResult, ImageRejected
from captionbot.queue import metrics
from captionbot.queue.connection import REDIS_DOWN_ERRORS, connect_redis, describe
from captionbot.queue.consumer import HEARTBEAT_S, Delivery, JobConsumer, Step
from captionbot.queue.streams import ensure_group
from captionbot.settings import Settings

log = logging.getLogger(__name__)

DOWN_LOG_EVERY_S = 30.0  # while Redis stays unreachable, say so this often
COMMAND_POLL_S = 0.05  # while automation runs, the high-priority lane is looked at this often


class CaptionModel(Protocol):
    """What the worker needs from a model (``captionbot.inference.captioner.Captioner`` and the test stand-ins)."""

    @property
    def model_version(self) -> str: ...

    def caption_images(
        self, images: Sequence[bytes], beam_size: int = DEFAULT_BEAM_SIZE, heatmap: bool = False, variants: int = 1
    ) -> list[Any]: ...


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    """Serve caption jobs until ``stop`` is set. ``redis``: a connection to use (default: from settings)."""

    def __init__(self, settings: Settings, captioner: CaptionModel, redis: Redis | None = None,
                 name: str | None = None) -> None:
        self.settings = settings
        self.captioner = captioner
        self.name = name or default_worker_name()
        self._redis = redis
        self.ready = False  # connected and serving (for /readyz)
        self.jobs_answered = 0

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve batches until ``stop`` is set, then finish the batch in hand, answer it and return.

        Rides out Redis outages (unanswered jobs stay pending and are reclaimed) and its own bugs (logged)."""
        redis = self._redis or await connect_redis(self.settings)
        consumer = JobConsumer(redis, self.settings, self.name)
        log.info("worker %s serving %s (streams %s, then %s; group %s, model %s, batch %d / %d ms)", self.name,
                 describe(self.settings), consumer.keys.commands, self.settings.stream, self.settings.group,
                 self.captioner.model_version,
                 self.settings.batch_size, self.settings.batch_wait_ms)
        finished = asyncio.Event()  # background tasks end on this, never by cancellation mid-command
        heartbeat = asyncio.create_task(self._heartbeat(consumer, finished), name=f"heartbeat:{self.name}")
        backoff = 0.05
        last_down_log = -DOWN_LOG_EVERY_S
        try:
            while not stop.is_set():
                try:
                    if not self.ready:
                        await ensure_group(redis, consumer.keys)
                        self.ready = True
                        log.info("worker %s connected", self.name)
                    batch = await consumer.read_batch(stop)
                    if batch:
                        await self._serve_batch(consumer, batch)
                    backoff = 0.05
                except REDIS_DOWN_ERRORS as exc:
                    # Jobs of an unfinished batch stay pending and are reclaimed after claim_idle_ms: none is lost.
                    if self.ready or time.monotonic() - last_down_log >= DOWN_LOG_EVERY_S:
                        log.warning("worker %s cannot reach the queue at %s (%s): retrying", self.name,
                                    describe(self.settings), type(exc).__name__)
                        last_down_log = time.monotonic()
                    self.ready = False
                    consumer.orphaned_by_us()  # a batch in hand stays pending: take it back once Redis is here
                    await _wait(stop, backoff)
                    backoff = min(backoff * 2, 2.0)
                except Exception:
                    # A bug, not bad input (that is answered per job). The batch's jobs stay pending and are
                    # reclaimed after claim_idle_ms; a job that keeps causing this is dead-lettered by attempts.
                    log.exception("worker %s: unexpected error serving a batch: continuing", self.name)
                    await _wait(stop, backoff)
                    backoff = min(backoff * 2, 2.0)
        finally:
            self.ready = False
            finished.set()
            await heartbeat
            with contextlib.suppress(*REDIS_DOWN_ERRORS):
                await redis.hdel(consumer.keys.workers, self.name)
            if self._redis is None:
                await redis.aclose()
            log.info("worker %s stopped after %d jobs", self.name, self.jobs_answered)

    # ------------------------------------------------------------------------------------------------- batch

    async def _serve_batch(self, consumer: JobConsumer, batch: list[Delivery]) -> None:
        metrics.BATCH_SIZE.observe(len(batch))
        runnable, answered = await consumer.admit(batch)
        self.jobs_answered += answered
        held = list(runnable)  # jobs in hand, kept from being reclaimed until the batch is done
        done = asyncio.Event()
        keep_alive = asyncio.create_task(self._keep_alive(consumer, held, done))
        try:
            # A reclaimed job (the consumer hands out one at a time) runs alone and is answered before the others
            # run: it may be the one that killed its last worker; alone, a crash is its own, and counts against it.
            for d in [d for d in runnable if d.reclaimed]:
                await self._run_and_answer(consumer, [d])
            fresh = [d for d in runnable if not d.reclaimed]
            commands = [d for d in fresh if consumer.lane_of(d) == consumer.keys.commands]
            automation = [d for d in fresh if consumer.lane_of(d) != consumer.keys.commands]
            if commands:  # the high-priority lane's jobs run and are answered first
                await self._run_and_answer(consumer, commands)
            if automation:
                await self._run_automation(consumer, automation, held)
        finally:
            done.set()
            await keep_alive

    async def _run_automation(self, consumer: JobConsumer, automation: list[Delivery], held: list[Delivery]) -> None:
        """Run the low lane's jobs as one batch (batching is what makes a CPU fast) and, while it runs, the commands
        that arrive meanwhile, beside it: a person never waits for a batch of automation to finish."""
        run = asyncio.create_task(self._run_and_answer(consumer, automation))
        try:
            while not run.done():
                await self._serve_commands_arrived(consumer, held)
                await asyncio.wait({run}, timeout=COMMAND_POLL_S)
        finally:
            await asyncio.wait({run})  # never left running on its own
        run.result()

    async def _serve_commands_arrived(self, consumer: JobConsumer, held: list[Delivery]) -> None:
        """While a batch of automation runs: run and answer the commands that came in meanwhile, at once."""
        arrived = await consumer.read_commands(self.settings.batch_size)
        if arrived:
            runnable, answered = await consumer.admit(arrived)
            self.jobs_answered += answered
            held.extend(runnable)
            # Beside a running batch: not marked as run alone, so a process death then blames neither (a job taken
            # back from a dead worker is run truly alone next, and only then counts).
            await self._run_and_answer(consumer, runnable, beside=True)

    async def _run_and_answer(self, consumer: JobConsumer, runnable: list[Delivery], beside: bool = False) -> None:
        """Run jobs (kept alive by the caller) and answer them; failures are retried or dead-lettered. ``beside``:
        another batch is running at the same time (so none of these is ever "alone")."""
        # Jobs of one beam size, heatmap option and number of variants run together.
        groups: dict[tuple[int, bool, int], list[Delivery]] = defaultdict(list)
        for d in runnable:
            assert d.job is not None
            groups[(d.job.beam_size, d.job.heatmap, d.job.variants)].append(d)

        answers: list[tuple[Delivery, CaptionResult]] = []
        failed: list[tuple[Delivery, BaseException]] = []
        started = time.monotonic()
        for (beam_size, heatmap, variants), group in groups.items():
            outs = await self._caption(consumer, group, beam_size, heatmap, variants, beside)
            for d, out in zip(group, outs, strict=True):
                if isinstance(out, BaseException) and not isinstance(out, ImageRejected):
                    failed.append((d, out))
                else:
                    answers.append((d, self._result(d, out)))
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)

        codes = await consumer.publish(answers)
        for (_, result), code in zip(answers, codes, strict=True):
            if code == 1:
                metrics.JOBS.labels("ok" if result.ok else "rejected").inc()
                metrics.JOB_LATENCY.observe(result.latency_ms / 1000)
                self.jobs_answered += 1
        for d, exc in failed:
            metrics.FAILURES.labels("model_error").inc()
            if await consumer.failed(d, f"model error: {type(exc).__name__}: {exc}") is Step.DEAD_LETTER:
                self.jobs_answered += 1

    def _run_model(self, images: list[bytes], beam_size: int, heatmap: bool, variants: int) -> list[Any]:
        """The model on a batch; ``variants`` is passed only when more than one is asked for."""
        if variants > 1:
            return list(self.captioner.caption_images(images, beam_size, heatmap, variants=variants))
        return list(self.captioner.caption_images(images, beam_size, heatmap))

    async def _caption(self, consumer: JobConsumer, group: list[Delivery], beam_size: int, heatmap: bool,
                       variants: int = 1, beside: bool = False) -> list[Any]:
        """Model outputs in order; a job whose inference raised gets its exception in its place.

        When the whole batch raises, each job is run alone, so one poison image fails only its own job. A job run
        alone is marked so while it runs (unless ``beside`` another batch): should the process die then, the job
        is known to be what killed it."""
        if len(group) == 1:
            return [await self._caption_alone(consumer, group[0], beam_size, heatmap, variants, mark=not beside)]
        images = [d.job.image for d in group if d.job]
        try:
            return await asyncio.to_thread(self._run_model, images, beam_size, heatmap, variants)
        except Exception as exc:
            log.warning("batch of %d failed (%s): captioning each image alone", len(images), type(exc).__name__)
        return [await self._caption_alone(consumer, d, beam_size, heatmap, variants, mark=not beside) for d in group]

    async def _caption_alone(self, consumer: JobConsumer, d: Delivery, beam_size: int, heatmap: bool,
                             variants: int = 1, mark: bool = True) -> Any:
        assert d.job is not None
        if mark:
            await consumer.running_alone(d)
        try:
            return (await asyncio.to_thread(self._run_model, [d.job.image], beam_size, heatmap, variants))[0]
        except Exception as exc:
            log.warning("inference failed on one image: %s: %s", type(exc).__name__, exc)
            return exc
        finally:
            if mark:
                await consumer.ran_alone(d)

    def _result(self, d: Delivery, out: Any) -> CaptionResult:
        job = d.job
        assert job is not None
        common: dict[str, Any] = dict(job_id=job.job_id, model_version=self.captioner.model_version, worker=self.name,
                      latency_ms=(time.time() - job.created_at) * 1000, context=job.context)
        if isinstance(out, ImageRejected):
            log.info("job %s: image refused: %s", job.job_id, out)
            return CaptionResult(ok=False, error=out.code, detail=out.detail, **common)
        return CaptionResult(ok=True, caption=out.caption, words=list(out.words), score=float(out.score),
                             heatmap_png=out.heatmap_png, text=getattr(out, "text", ""),
                             confidence=float(getattr(out, "confidence", 1.0)), labels=list(getattr(out, "labels", [])),
                             variants=[(str(c), float(p)) for c, p in getattr(out, "variants", [])][:job.variants],
                             **common)

    async def _keep_alive(self, consumer: JobConsumer, deliveries: list[Delivery], done: asyncio.Event) -> None:
        """While a batch is in hand, refresh its jobs' idle time so a live worker's jobs are not reclaimed
        (``deliveries`` may grow meanwhile: commands taken while automation runs)."""
        interval = max(0.02, self.settings.claim_idle_ms / 3000)
        while not await _wait(done, interval):
            with contextlib.suppress(*REDIS_DOWN_ERRORS):
                await consumer.keep_alive(deliveries)

    async def _heartbeat(self, consumer: JobConsumer, done: asyncio.Event) -> None:
        """Announce this worker (for ``stats``) and refresh the queue gauges every couple of seconds."""
        while True:
            with contextlib.suppress(*REDIS_DOWN_ERRORS):
                await consumer.heartbeat({"model_version": self.captioner.model_version, "jobs": self.jobs_answered})
                await consumer.report_depth()
            if await _wait(done, HEARTBEAT_S):
                return


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event``; True when it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()

