"""The bot's side of the queue: add a caption job, wait for its result. Never imports torch.

Each bot instance reads its own result stream (``reply_to``); a background task delivers results to the waiting
callers by job id, once each. ``caption`` never raises for what a user can be told: it returns a
``CaptionResult`` with ``ok=False`` and an ``ErrorCode`` (BUSY, TIMEOUT, DEAD_LETTER, or the image's refusal).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import statistics
import time
import uuid
from collections import deque
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from captionbot.formats import (
    DEFAULT_BEAM_SIZE,
    MAX_BEAM_SIZE,
    MAX_CONTEXT_BYTES,
    MAX_VARIANTS,
    MIN_BEAM_SIZE,
    MIN_VARIANTS,
    CaptionJob,
    CaptionResult,
    ErrorCode,
    Priority,
)
from captionbot.queue import metrics
from captionbot.queue.admission import Admission
from captionbot.queue.connection import REDIS_DOWN_ERRORS, connect_redis, within
from captionbot.queue.scripts import QueueScripts, entry_bytes, flatten
from captionbot.queue.streams import Fields, StreamReply, ensure_group
from captionbot.settings import Settings

log = logging.getLogger(__name__)

WORKER_STALE_S = 15.0  # a worker whose heartbeat is older than this is not counted as live
FIRST_BEAT_WAIT_S = 1.5  # how long workers_alive() waits for a heartbeat (workers beat each second)
ALIVE_MEMORY_S = 5.0  # a "yes, a worker is alive" is trusted this long before Redis is asked again
CALL_TIMEOUT_S = 5.0  # default deadline of connect() and stats()
LISTEN_BLOCK_MS = 250  # the result listener's blocking read; also the longest wait in close()


class CaptionClient:
    """Producer and result listener of one bot instance. Create with :meth:`connect`, end with :meth:`close`."""

    def __init__(self, redis: Redis, settings: Settings, instance_id: str, owns_redis: bool) -> None:
        self.redis = redis
        self.settings = settings
        self.instance_id = instance_id
        self.keys = settings.redis_keys
        self.reply_to = self.keys.results(instance_id)
        self.scripts = QueueScripts(redis)
        self.admission = {  # one shared room question per lane: a full automation lane never makes a command BUSY
            p: Admission(redis, self.keys.lane(p), self.keys.lane_bytes(self.keys.lane(p)), settings.queue_maxlen,
                         settings.queue_max_bytes) for p in Priority}
        self.duplicates_dropped = 0  # results for a job already answered (or given up on): never delivered twice
        self._owns_redis = owns_redis
        self._waiting: dict[str, tuple[CaptionJob, asyncio.Future[CaptionResult]]] = {}
        self._latencies_ms: deque[float] = deque(maxlen=500)
        self._alive_until = 0.0  # monotonic time until which a worker is known to be alive
        self._model_version = ""
        self._listener: asyncio.Task[None] | None = None
        self._closing = False

    @classmethod
    async def connect(
        cls, settings: Settings, instance_id: str | None = None, redis: Redis | None = None,
        timeout: float = CALL_TIMEOUT_S,
    ) -> CaptionClient:
        """Connect (or use ``redis``) and start listening for results, within ``timeout`` seconds. Works while Redis
        is still down (or frozen): the client then keeps trying on its own."""
        deadline = time.monotonic() + timeout
        instance_id = instance_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        client = cls(redis or await connect_redis(settings), settings, instance_id, owns_redis=redis is None)
        try:  # so jobs added before any worker starts are kept
            await within(deadline, ensure_group(client.redis, client.keys))
        except REDIS_DOWN_ERRORS as exc:
            log.warning("queue not reachable yet (%s): will keep trying", type(exc).__name__)
        client._listener = asyncio.create_task(client._listen(), name=f"results:{instance_id}")
        return client

    # ------------------------------------------------------------------------------------------------ caption

    async def caption(
        self, image: bytes, *, beam_size: int = DEFAULT_BEAM_SIZE, heatmap: bool = False,
        context: dict[str, Any] | None = None, timeout: float | None = None, priority: Priority = Priority.LOW,
        variants: int = 1,
    ) -> CaptionResult:
        """Queue one image and wait for its caption (or a failure result). ``timeout`` defaults to the settings'.

        ``priority``: ``HIGH`` for a person waiting (a command), served before every ``LOW`` job (automation).
        ``variants`` > 1: the result's ``variants`` holds up to that many different captions."""
        if not MIN_BEAM_SIZE <= beam_size <= MAX_BEAM_SIZE:
            raise ValueError(f"beam_size must be {MIN_BEAM_SIZE}..{MAX_BEAM_SIZE}, not {beam_size}")
        if not MIN_VARIANTS <= variants <= MAX_VARIANTS:
            raise ValueError(f"variants must be {MIN_VARIANTS}..{MAX_VARIANTS}, not {variants}")
        if not self.settings.priority_lane:  # workers older than the lanes: everything in the old stream
            priority = Priority.LOW
        wait_s = self.settings.result_timeout_s if timeout is None else timeout
        job = CaptionJob(image=image, reply_to=self.reply_to, beam_size=beam_size, heatmap=heatmap,
                         context=dict(context or {}), expires_at=time.time() + wait_s, variants=variants)
        too_large = self._too_large(job)
        if too_large:
            return self._failure(job, ErrorCode.TOO_LARGE, too_large)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + wait_s
        future: asyncio.Future[CaptionResult] = loop.create_future()
        self._waiting[job.job_id] = (job, future)  # before enqueueing: a fast worker may answer at once
        try:
            accepted = await self._enqueue(job, deadline, priority)
            if accepted is not True:
                metrics.BUSY.inc()
                return self._failure(job, ErrorCode.BUSY, accepted or "queue full")
            metrics.ENQUEUED.inc()
            try:
                result = await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("job %s: no result in time", job.job_id)
                return self._failure(job, ErrorCode.TIMEOUT, "no result before the deadline")
            if result.ok:
                self._latencies_ms.append((time.time() - job.created_at) * 1000)
            return result
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: the user gets a generic message, the log gets the details
            log.exception("job %s failed in the queue client", job.job_id)
            return self._failure(job, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        finally:
            self._waiting.pop(job.job_id, None)

    def _too_large(self, job: CaptionJob) -> str:
        """Why a job may never be queued (its image over ``max_image_bytes``, or alone over the byte budget), or ""."""
        if len(job.image) > self.settings.max_image_bytes:
            return f"image of {len(job.image)} bytes is over {self.settings.max_image_bytes}"
        if len(json.dumps(job.context)) > MAX_CONTEXT_BYTES:
            return f"context is over {MAX_CONTEXT_BYTES} bytes"
        if entry_bytes(job.to_fields()) > self.settings.queue_max_bytes:
            return f"job is over the queue's byte budget of {self.settings.queue_max_bytes}"
        return ""

    async def _enqueue(self, job: CaptionJob, deadline: float, priority: Priority = Priority.LOW) -> bool | str:
        """True when queued in ``priority``'s lane; a reason string when that lane is full (each lane has its own
        ``queue_maxlen`` and ``queue_max_bytes``) or the queue stayed unreachable until the deadline
        (``time.monotonic()``). Each try, and the waits between, end by the deadline; a try still running then is
        abandoned, not cancelled: if Redis wakes later it may still queue the job, whose result is then dropped."""
        backoff = 0.05
        fields = job.to_fields()
        size = entry_bytes(fields)
        stream = self.keys.lane(priority)
        while True:
            try:
                if full := await self.admission[priority].check(size, deadline):  # in a flood: BUSY, image unsent
                    return full
                with self.admission[priority].offering():
                    entry = await within(deadline, self.scripts.enqueue_if_room(
                        keys=[stream, self.keys.lane_bytes(stream)],
                        args=[self.settings.queue_maxlen, self.settings.queue_max_bytes, size, *flatten(fields)],
                    ))
                if entry == 0:
                    return f"queue holds {self.settings.queue_maxlen} jobs"
                if entry == -1:
                    return f"queue holds close to {self.settings.queue_max_bytes} bytes of jobs"
                return True
            except REDIS_DOWN_ERRORS as exc:
                if time.monotonic() + backoff >= deadline:
                    return f"queue unreachable: {type(exc).__name__}"
                log.warning("queue unreachable (%s): retrying job %s", type(exc).__name__, job.job_id)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def _failure(self, job: CaptionJob, code: ErrorCode, detail: str) -> CaptionResult:
        return CaptionResult(job_id=job.job_id, ok=False, error=code, detail=detail, context=job.context,
                             latency_ms=(time.time() - job.created_at) * 1000)

    # ------------------------------------------------------------------------------------------------ results

    async def _listen(self) -> None:
        """Read this instance's result stream forever, delivering each result to its waiting caller once."""
        last_id: bytes | str = "0-0"
        backoff = 0.05
        while not self._closing:
            try:
                resp = cast(StreamReply, await self.redis.xread({self.reply_to: last_id}, count=100,
                                                                block=LISTEN_BLOCK_MS))
                backoff = 0.05
                ids: list[bytes] = []
                for _, entries in resp or []:
                    for entry_id, fields in entries:
                        last_id = entry_id
                        ids.append(entry_id)
                        self._deliver(fields)
                if ids:  # read once: free the memory (heatmaps can be large)
                    await self.redis.xdel(self.reply_to, *ids)
            except asyncio.CancelledError:
                raise
            except REDIS_DOWN_ERRORS as exc:
                log.warning("result stream unreachable (%s): reconnecting in %.2fs", type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:
                log.exception("result listener error: continuing")
                await asyncio.sleep(0.5)

    def _deliver(self, fields: Fields) -> None:
        try:
            result = CaptionResult.from_fields(fields)
        except (KeyError, ValueError, TypeError):
            log.exception("unreadable result on %s: dropped", self.reply_to)
            return
        if result.model_version:
            self._model_version = result.model_version
        _, future = self._waiting.pop(result.job_id, (None, None))
        if future is None or future.done():
            self.duplicates_dropped += 1
            log.info("result for job %s arrived with nobody waiting (late or repeated): dropped", result.job_id)
            return
        future.set_result(result)

    async def workers_alive(self, wait_s: float = FIRST_BEAT_WAIT_S) -> bool:
        """Is a worker alive (a heartbeat in the last ``WORKER_STALE_S`` s, on Redis's clock)? Waits up to
        ``wait_s`` for one (a worker that just started). A yes is remembered for ``ALIVE_MEMORY_S``; when Redis
        does not answer, True: the caption call itself then reports the queue as unreachable."""
        if time.monotonic() < self._alive_until:
            return True
        deadline = time.monotonic() + wait_s
        while True:
            try:
                seconds, micros = await within(deadline + 1, self.redis.time())
                now = seconds + micros / 1e6
                beats = await within(deadline + 1, self.redis.hvals(self.keys.workers))
            except REDIS_DOWN_ERRORS:
                return True
            if any(now - _seen(raw) < WORKER_STALE_S for raw in beats):
                self._alive_until = time.monotonic() + ALIVE_MEMORY_S
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.25)

    # -------------------------------------------------------------------------------------------------- stats

    async def stats(self, timeout: float = CALL_TIMEOUT_S) -> dict[str, Any]:
        """Queue depth, jobs in progress, median latency seen by this instance, model version, live workers.

        Answers within ``timeout`` seconds; ``available`` is False when Redis did not answer by then."""
        deadline = time.monotonic() + timeout
        out: dict[str, Any] = {
            "queue_depth": None, "pending": None, "dead_letters": None, "workers": 0,
            "median_latency_ms": round(statistics.median(self._latencies_ms), 1) if self._latencies_ms else None,
            "model_version": self._model_version, "instance_id": self.instance_id, "available": True,
        }
        try:
            length = pending = 0
            for stream in self.keys.lanes:  # both lanes together
                length += await within(deadline, self.redis.xlen(stream))
                with contextlib.suppress(ResponseError):  # no group yet
                    pending += (await within(deadline, self.redis.xpending(stream, self.keys.group)))["pending"]
            out.update(queue_depth=max(0, length - pending), pending=pending,
                       dead_letters=await within(deadline, self.redis.xlen(self.keys.dead)))
            now = time.time()
            live = []
            for raw in (await within(deadline, self.redis.hgetall(self.keys.workers))).values():
                beat = json.loads(raw)
                if now - beat.get("seen", 0) < WORKER_STALE_S:
                    live.append(beat)
            out["workers"] = len(live)
            if live:
                out["model_version"] = max(live, key=lambda b: b["seen"]).get("model_version", "")
        except REDIS_DOWN_ERRORS:
            out["available"] = False
        return out

    async def close(self) -> None:
        """Stop listening (callers still waiting get an INTERNAL "client closed" result); close our Redis."""
        self._closing = True
        if self._listener:
            # Let the listener finish its command and see the flag: cancelling redis-py mid-command is unsafe.
            done, _ = await asyncio.wait({self._listener}, timeout=LISTEN_BLOCK_MS / 1000 + 2)
            if not done:
                self._listener.cancel()
        for job, future in list(self._waiting.values()):
            if not future.done():
                future.set_result(self._failure(job, ErrorCode.INTERNAL, "client closed"))
        if self._owns_redis:
            await self.redis.aclose()


def _seen(raw: bytes | str) -> float:
    """A heartbeat's time (Redis clock); 0 for one that does not parse (it then counts as long dead)."""
    try:
        seen = json.loads(raw).get("seen", 0)
        return float(seen) if isinstance(seen, int | float) else 0.0
    except (ValueError, AttributeError, UnicodeDecodeError):
        return 0.0
