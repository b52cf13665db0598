"""The worker's side of the queue: read batches from the consumer group, reclaim, answer, retry, dead-letter.

The failure semantics (at least once, reclaimed after, dead-lettered after) are written down in
:mod:`captionbot.queue`; this module implements them, and :func:`next_step` is the one rule that decides between
running a job, putting it back on the stream, and giving up on it. It knows nothing about the model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from redis.asyncio import Redis
from redis.typing import KeyT, StreamIdT

from captionbot.formats import CaptionJob, CaptionResult, ErrorCode, JobInvalid
from captionbot.queue import metrics
from captionbot.queue.scripts import QueueScripts, entry_bytes, flatten
from captionbot.queue.streams import Entries, Fields, StreamReply, ensure_group, is_missing_group
from captionbot.settings import Settings

log = logging.getLogger(__name__)

REPLY_NOT_A_STREAM = -1  # FINISH's answer when reply_to names a key that is not a stream
DEAD_LETTER_IMAGE_BYTES = 1024 * 1024  # a dead letter keeps the image only up to this size
HEARTBEAT_S = 1.0  # a worker writes its heartbeat this often
DEAD_AFTER_S = 3.0  # a worker whose heartbeat is older than this is dead: its jobs are taken over at once
FAILURES_TTL_S = 24 * 3600  # a job's failure count and "alone" mark expire after this
RESULTS_MAXLEN = 10_000  # a result stream keeps about this many unread results
MAX_BLOCK_MS = 1000  # longest blocking read, so a stop request is seen within a second


@dataclass
class Delivery:
    """One stream entry handed to this worker. ``attempt`` counts from 1: the job's failed attempts so far (kept in
    Redis by the workers, never a field a client writes), plus this one; set by :meth:`JobConsumer.admit`.
    ``deliveries`` is the consumer group's delivery count of the entry."""

    entry_id: str
    fields: Fields
    job: CaptionJob | None  # None when the entry is not a valid job
    deliveries: int
    reclaimed: bool = False
    invalid: JobInvalid | None = None  # why ``job`` is None
    received_at: float = field(default_factory=time.monotonic)
    attempt: int = 1
    stream: str = ""  # the lane (job stream) it came from; every step on it (answer, retry, marks) uses that lane

    @property
    def unreadable(self) -> str:
        return self.invalid.reason if self.invalid else ""


def max_deliveries(max_attempts: int) -> int:
    """A safety net under the failure count: a job delivered this often without an answer is given up on (each
    failed attempt may follow one uncounted delivery, cut off with its batch)."""
    return 3 * max_attempts + 2


def retry_delay_ms(attempt: int, settings: Settings) -> int:
    """How long a job whose ``attempt``-th run failed waits before it runs again (doubling, at most the reclaim
    idle time)."""
    return int(min(settings.claim_idle_ms, settings.retry_backoff_ms * 2 ** max(0, attempt - 1)))


class Step(StrEnum):
    RUN = "run"  # attempts left: run it
    RETRY = "retry"  # it failed with attempts left: back on the stream, to run again
    DEAD_LETTER = "dead_letter"  # failed ``max_attempts`` times: given up, the requester is told


def next_step(attempt: int, max_attempts: int, *, failed: bool) -> Step:
    """The retry rule, the only one. ``attempt`` counts this delivery and every earlier one (from 1).

    Before a job runs (``failed=False``), each earlier delivery failed: its worker died, hung or hit a bug, or the
    model raised. After it fails here (``failed=True``), this delivery failed too. A job with ``max_attempts``
    failures is dead-lettered; one with attempts left runs (again)."""
    failures = attempt if failed else attempt - 1
    if failures >= max_attempts:
        return Step.DEAD_LETTER
    return Step.RETRY if failed else Step.RUN


class JobConsumer:
    """One worker's membership of the consumer group (its consumer name is the worker name)."""

    def __init__(self, redis: Redis, settings: Settings, name: str) -> None:
        self.redis = redis
        self.settings = settings
        self.name = name
        self.keys = settings.redis_keys
        self.scripts = QueueScripts(redis)
        self._next_reclaim = 0.0
        self._next_dead_check = 0.0
        self._orphaned: set[str] = {name}  # consumers whose pending jobs to take over now (ours: left by a restart)
        self._reply_prefix = self.keys.results("")

    def _delivery(self, stream: bytes | str, entry_id: bytes | str, fields: Fields, times_delivered: int,
                  reclaimed: bool) -> Delivery:
        eid, lane = _s(entry_id), _s(stream)
        try:
            job = CaptionJob.from_fields(fields, reply_prefix=self._reply_prefix,
                                         max_image_bytes=self.settings.max_image_bytes)
        except JobInvalid as exc:  # a foreign, forged or corrupt entry: answered or set aside, never run
            return Delivery(eid, fields, None, times_delivered, reclaimed, invalid=exc, stream=lane)
        return Delivery(eid, fields, job, times_delivered, reclaimed, stream=lane)

    def lane_of(self, d: Delivery) -> str:
        """The job stream (lane) a delivery came from."""
        return d.stream or self.keys.jobs

    # ---------------------------------------------------------------------------------------------- reading

    async def read_batch(self, stop: asyncio.Event | None = None) -> list[Delivery]:
        """Up to ``batch_size`` jobs: reclaimed ones first, then new ones, the high-priority lane's before the
        low one's; after the first job arrives, wait up to ``batch_wait_ms`` for more. Returns [] when nothing
        came within about a second."""
        size = self.settings.batch_size
        # At most one job taken back per batch: it runs alone, so if it kills this worker too, no other job taken
        # back is held (and cut off) with it.
        batch = await self._take_over_orphans(1)
        if not batch:
            batch = await self._reclaim_due(1)
        if batch:  # a job taken back runs in a batch of its own: new jobs read with it would die with it
            return batch
        block_ms = self._first_block_ms()
        batch += await self._read_new(size - len(batch), block_ms)
        if not batch:
            return batch
        deadline = time.monotonic() + self.settings.batch_wait_ms / 1000
        while len(batch) < size and not (stop and stop.is_set()):
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms < 1:
                break
            more = await self._read_new(size - len(batch), left_ms)
            if not more:
                break
            batch += more
        return batch

    def _first_block_ms(self) -> int:
        until_reclaim = int((self._next_reclaim - time.monotonic()) * 1000)
        return max(1, min(MAX_BLOCK_MS, until_reclaim))

    async def _read_new(self, count: int, block_ms: int | None) -> list[Delivery]:
        """Up to ``count`` new jobs, the high lane's first: each lane is read without blocking, high then low; only
        when both are empty does the read block (``block_ms``) on both at once. (That blocking read takes up to
        ``count`` from each lane, so a batch can briefly hold up to twice ``count`` when both fill in the same
        instant.)"""
        try:
            out: list[Delivery] = []
            for stream in self.keys.lanes:
                if len(out) < count:
                    out += await self._xreadgroup([stream], count - len(out), None)
            if out or block_ms is None:
                return out
            return await self._xreadgroup(list(self.keys.lanes), count, block_ms)
        except Exception as exc:
            if not is_missing_group(exc):
                raise
            log.warning("consumer group %s vanished (Redis lost its data?): creating it again", self.keys.group)
            await ensure_group(self.redis, self.keys)
            return []

    async def read_commands(self, count: int) -> list[Delivery]:
        """Up to ``count`` new jobs of the high-priority lane, without waiting (while automation runs)."""
        try:
            return await self._xreadgroup([self.keys.commands], count, None)
        except Exception as exc:
            if not is_missing_group(exc):
                raise
            await ensure_group(self.redis, self.keys)
            return []

    async def _xreadgroup(self, lanes: list[str], count: int, block_ms: int | None) -> list[Delivery]:
        streams: dict[KeyT, StreamIdT] = {stream: ">" for stream in lanes}
        resp = cast(StreamReply, await self.redis.xreadgroup(self.keys.group, self.name, streams, count=count,
                                                             block=block_ms))
        out = [self._delivery(stream, eid, f, 1, False) for stream, entries in resp or [] for eid, f in entries if f]
        # Both lanes answered one blocking read: the high lane's jobs first, whatever order Redis listed them in.
        return sorted(out, key=lambda d: d.stream != self.keys.commands)

    def orphaned_by_us(self) -> None:
        """Our own pending jobs were left in the air (Redis went away mid-batch): take them back on the next read,
        rather than waiting ``claim_idle_ms`` for them."""
        self._orphaned.add(self.name)

    async def heartbeat(self, beat: dict[str, Any]) -> None:
        """Announce this worker as alive, stamped with Redis's clock (so hosts' clocks never disagree about it)."""
        seconds, micros = await self.redis.time()
        await self.redis.hset(self.keys.workers, self.name, json.dumps({**beat, "seen": seconds + micros / 1e6}))

    async def find_dead_workers(self, now: float) -> None:
        """Mark workers whose heartbeat (Redis server time) is older than ``DEAD_AFTER_S`` for a take-over."""
        beats = cast(dict[bytes, bytes], await self.redis.hgetall(self.keys.workers))
        for raw_name, raw in beats.items():
            name = raw_name.decode()
            try:
                seen = float(json.loads(raw).get("seen", 0))
            except (ValueError, AttributeError):
                continue
            if name != self.name and now - seen > DEAD_AFTER_S:
                self._orphaned.add(name)

    async def _take_over_orphans(self, count: int) -> list[Delivery]:
        """Claim the pending jobs of dead workers (and our own, after an outage) at once, without the idle wait;
        the high lane's first."""
        if time.monotonic() >= self._next_dead_check:
            self._next_dead_check = time.monotonic() + HEARTBEAT_S / 2
            seconds, micros = await self.redis.time()
            await self.find_dead_workers(seconds + micros / 1e6)
        out: list[Delivery] = []
        for name in sorted(self._orphaned):
            wanted = count - len(out)
            if wanted <= 0:
                break
            left = False  # some of its jobs are still pending after this take-over
            for stream in self.keys.lanes:
                if count - len(out) > 0:
                    out += await self._claim_pending_of(name, stream, count - len(out))
                left = left or await self._has_pending(name, stream)
            if not left:  # none left in either lane (known before its last job runs): done with it
                self._orphaned.discard(name)
                if name != self.name:
                    await self.redis.hdel(self.keys.workers, name)
        return out

    async def _pending_of(self, name: str, stream: str, count: int) -> list[dict[str, Any]]:
        try:
            return cast(list[dict[str, Any]], await self.redis.xpending_range(
                stream, self.keys.group, min="-", max="+", count=count, consumername=name))
        except Exception as exc:
            if not is_missing_group(exc):
                raise
            return []

    async def _has_pending(self, name: str, stream: str) -> bool:
        return bool(await self._pending_of(name, stream, 1))

    async def _claim_pending_of(self, name: str, stream: str, wanted: int) -> list[Delivery]:
        """Claim up to ``wanted`` of consumer ``name``'s pending jobs in one lane."""
        pending = await self._pending_of(name, stream, wanted)
        times = {_s(cast(bytes, p["message_id"])): int(p["times_delivered"]) for p in pending}
        # XCLAIM (without JUSTID) counts a delivery, as XAUTOCLAIM does: the take-over is a new attempt
        claimed = cast(Entries, await self.redis.xclaim(
            stream, self.keys.group, self.name, min_idle_time=0, message_ids=list(times)
        )) if times else []
        out = [self._delivery(stream, eid, f, times[_s(eid)] + 1, True) for eid, f in claimed if f]
        if claimed:
            log.warning("took over %d pending jobs of %s in %s", len(claimed),
                        "this worker (after an outage)" if name == self.name
                        else f"dead worker {name} (no heartbeat for {DEAD_AFTER_S:.0f} s)", stream)
            metrics.RECLAIMS.inc(len(claimed))
        return out

    async def _reclaim_due(self, count: int) -> list[Delivery]:
        """Take over jobs idle for ``claim_idle_ms`` on any consumer (a dead worker's, or our own failed ones), the
        high lane's first."""
        now = time.monotonic()
        if now < self._next_reclaim:
            return []
        self._next_reclaim = now + max(0.05, self.settings.claim_idle_ms / 2000)
        out: list[Delivery] = []
        for stream in self.keys.lanes:
            if len(out) >= count:
                self._next_reclaim = now  # the low lane was not looked at: look again on the next read
                break
            out += await self._reclaim_lane(stream, count - len(out), now)
        return out

    async def _reclaim_lane(self, stream: str, count: int, now: float) -> list[Delivery]:
        try:
            resp = await self.redis.xautoclaim(
                stream, self.keys.group, self.name, min_idle_time=self.settings.claim_idle_ms,
                start_id="0-0", count=count,
            )
        except Exception as exc:
            if not is_missing_group(exc):
                raise
            await ensure_group(self.redis, self.keys)
            return []
        out = []
        for eid, fields in resp[1]:
            if not fields:
                continue
            info = await self.redis.xpending_range(stream, self.keys.group, min=eid, max=eid, count=1)
            times = int(info[0]["times_delivered"]) if info else 1
            d = self._delivery(stream, eid, fields, times, True)
            log.warning("reclaimed job %s (attempt %d) after %d ms idle", _job_id(d), d.attempt,
                        self.settings.claim_idle_ms)
            metrics.RECLAIMS.inc()
            out.append(d)
        if len(resp[1]) >= count:  # more may be waiting (several dead workers): look again on the next read
            self._next_reclaim = now
        return out

    async def keep_alive(self, deliveries: list[Delivery]) -> None:
        """Reset the idle time of jobs still being worked on, so they are not reclaimed from a live worker."""
        for stream in self.keys.lanes:
            ids: list[StreamIdT] = [d.entry_id for d in deliveries if self.lane_of(d) == stream]
            if ids:
                await self.redis.xclaim(stream, self.keys.group, self.name, min_idle_time=0, message_ids=ids,
                                        justid=True)

    # ------------------------------------------------------------------------------------ retry or dead letter

    async def admit(self, batch: list[Delivery]) -> tuple[list[Delivery], int]:
        """The deliveries to run now, and how many others were answered here: an invalid job is dead-lettered (its
        requester told when its job id and ``reply_to`` are valid), and a job whose earlier deliveries used up its
        attempts is dead-lettered (:func:`next_step`)."""
        runnable: list[Delivery] = []
        answered = 0
        await self._count_failures(batch)
        gave_up: list[tuple[Delivery, CaptionResult]] = []
        now = time.time()
        for d in batch:
            if d.job is not None and d.job.expired(now):  # its asker no longer waits: answer it without the model
                log.info("job %s: its asker gave up %.1f s ago; not captioned", d.job.job_id,
                         now - (d.job.expires_at or now))
                gave_up.append((d, CaptionResult(job_id=d.job.job_id, ok=False, error=ErrorCode.TIMEOUT,
                                                 detail="the asker gave up before a worker took the job",
                                                 worker=self.name, context=d.job.context)))
            elif d.invalid is not None:
                inv = d.invalid
                metrics.FAILURES.labels("unreadable").inc()
                if inv.job_id and inv.reply_to:
                    d.job = CaptionJob(image=b"", reply_to=inv.reply_to, job_id=inv.job_id, context=inv.context)
                    await self.dead_letter(d, f"invalid job: {inv.reason}", attempts_made=0)
                    answered += 1
                else:
                    await self.discard(d, f"invalid job: {inv.reason}")
            elif d.deliveries > max_deliveries(self.settings.max_attempts):
                reason = f"not answered in {d.deliveries - 1} deliveries (workers killed, hung or failing on it)"
                await self.dead_letter(d, reason, attempts_made=d.attempt - 1)
                answered += 1
            elif next_step(d.attempt, self.settings.max_attempts, failed=False) is Step.RUN:
                runnable.append(d)
            else:
                failures = d.attempt - 1
                reason = f"failed {failures} times (the model raised, or its worker died running it alone)"
                await self.dead_letter(d, reason, attempts_made=failures)
                answered += 1
        if gave_up:
            metrics.FAILURES.labels("expired").inc(len(gave_up))
            answered += sum(code == 1 for code in await self.publish(gave_up))
        return runnable, answered

    async def _count_failures(self, batch: list[Delivery]) -> None:
        """Set each delivery's ``attempt`` from the failures Redis holds for it. A reclaimed job whose "alone" mark is
        still set was being run alone when its worker died: that death counts against it (and only then: a batch
        that died with several jobs in it counts against none of them; they are run alone next)."""
        reclaimed = [d for d in batch if d.reclaimed and d.job is not None]
        if reclaimed:
            async with self.redis.pipeline(transaction=False) as pipe:
                for d in reclaimed:
                    pipe.getdel(self.keys.alone(d.entry_id, self.lane_of(d)))
                marks = await pipe.execute()
            for d, mark in zip(reclaimed, marks, strict=True):
                if mark is not None:
                    log.warning("job %s: its worker died running it alone: counted as a failed attempt", _job_id(d))
                    await self._add_failure(d)
        async with self.redis.pipeline(transaction=False) as pipe:
            for d in batch:
                pipe.get(self.keys.failures(d.entry_id, self.lane_of(d)))
            counts = await pipe.execute()
        for d, count in zip(batch, counts, strict=True):
            d.attempt = int(count or 0) + 1

    async def _add_failure(self, d: Delivery) -> None:
        key = self.keys.failures(d.entry_id, self.lane_of(d))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, FAILURES_TTL_S)
            await pipe.execute()

    async def running_alone(self, d: Delivery) -> None:
        """Mark that this job runs alone now (set before the model runs on it, cleared by :meth:`ran_alone`)."""
        await self.redis.set(self.keys.alone(d.entry_id, self.lane_of(d)), self.name, ex=FAILURES_TTL_S)

    async def ran_alone(self, d: Delivery) -> None:
        await self.redis.delete(self.keys.alone(d.entry_id, self.lane_of(d)))

    async def failed(self, d: Delivery, reason: str) -> Step:
        """This delivery of a job failed: put the job back on the stream, or dead-letter it (:func:`next_step`)."""
        await self._add_failure(d)
        step = next_step(d.attempt, self.settings.max_attempts, failed=True)
        if step is Step.DEAD_LETTER:
            await self.dead_letter(d, reason)
        else:
            log.warning("job %s attempt %d failed (%s): retrying", _job_id(d), d.attempt, reason)
            await self.retry(d)
        return step

    # --------------------------------------------------------------------------------------------- answering

    async def publish(self, answers: list[tuple[Delivery, CaptionResult]]) -> list[int]:
        """Answer jobs: publish each result to its requester, ack and delete the entry, atomically per job.

        Returns one code per job (1 published, 0 or 2 already answered elsewhere, -1 ``reply_to`` is some other
        type of key: then the job is dead-lettered unanswered; see ``scripts.FINISH``)."""
        if not answers:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for d, result in answers:
                await self._finish(d, result, None, pipe)  # queues the script on the pipeline
            codes = [int(c) for c in await pipe.execute()]
        for (d, _), code in zip(answers, codes, strict=True):
            if code == REPLY_NOT_A_STREAM:
                await self.discard(d, f"reply_to {d.job.reply_to if d.job else ''} is not a stream")
            elif code != 1:
                metrics.DUPLICATES.inc()
                log.info("job %s was already answered (code %d): not published again", _job_id(d), code)
        return codes

    async def dead_letter(self, d: Delivery, reason: str, attempts_made: int | None = None) -> CaptionResult:
        """Give up on a job: record it in the dead-letter stream and tell the requester it could not be captioned.
        Called by :meth:`admit` and :meth:`failed`, which decide when.

        ``attempts_made`` defaults to this delivery's attempt (it was run and failed)."""
        assert d.job is not None
        attempts = d.attempt if attempts_made is None else attempts_made
        result = CaptionResult(
            job_id=d.job.job_id, ok=False, error=ErrorCode.DEAD_LETTER, detail=reason, worker=self.name,
            latency_ms=(time.time() - d.job.created_at) * 1000, context=d.job.context,
        )
        dead = _dead_fields(d.fields)
        dead.update(reason=reason, attempts=str(attempts), worker=self.name, failed_at=repr(time.time()),
                    entry_id=d.entry_id, lane=self.lane_of(d))
        if await self._finish(d, result, dead, self.redis) == REPLY_NOT_A_STREAM:
            await self.discard(d, f"{reason}; reply_to {d.job.reply_to} is not a stream")
        metrics.JOBS.labels("dead_letter").inc()
        log.error("job %s dead-lettered after %d attempts: %s", d.job.job_id, attempts, reason)
        return result

    async def retry(self, d: Delivery) -> None:
        """Leave a job whose attempt failed pending, due for a reclaim after :func:`retry_delay_ms`: its next run is
        a new delivery, so Redis counts the attempt (``XCLAIM ... IDLE`` sets how long it has already waited)."""
        delay_ms = retry_delay_ms(d.attempt, self.settings)
        await self.redis.xclaim(
            self.lane_of(d), self.keys.group, self.name, min_idle_time=0, message_ids=[d.entry_id],
            idle=max(0, self.settings.claim_idle_ms - delay_ms), justid=True,
        )
        self._next_reclaim = min(self._next_reclaim, time.monotonic() + delay_ms / 1000)

    async def discard(self, d: Delivery, reason: str) -> None:
        """Dead-letter an entry whose requester cannot be told (no valid job id or ``reply_to``)."""
        dead = _dead_fields(d.fields)
        dead.update(reason=reason, worker=self.name, entry_id=d.entry_id, attempts=str(d.attempt),
                    lane=self.lane_of(d))
        stream = self.lane_of(d)
        await self.scripts.discard(
            keys=[stream, self.keys.dead, self.keys.lane_bytes(stream)],
            args=[self.keys.group, d.entry_id, self.settings.dead_letter_maxlen, entry_bytes(d.fields),
                  *flatten(dead)],
        )
        log.error("entry %s dead-lettered unanswered: %s", d.entry_id, reason)

    def _finish(
        self, d: Delivery, result: CaptionResult, dead: dict[str, bytes | str] | None, client: Redis
    ) -> Awaitable[Any]:
        """The FINISH script call for one job, on ``client`` (the connection, or a pipeline to batch them)."""
        assert d.job is not None
        ttl_ms = self.settings.result_ttl_s * 1000
        stream = self.lane_of(d)
        keys = [stream, d.job.reply_to, self.keys.answered(d.job.job_id), self.keys.lane_bytes(stream)]
        result_args = flatten(result.to_fields())
        args = [self.keys.group, d.entry_id, ttl_ms, RESULTS_MAXLEN, self.settings.dead_letter_maxlen,
                entry_bytes(d.fields), len(result_args), *result_args]
        if dead is not None:
            keys.append(self.keys.dead)
            args += flatten(dead)
        return self.scripts.finish(keys=keys, args=args, client=client)

    # ------------------------------------------------------------------------------------------------ status

    async def report_depth(self) -> tuple[int, int]:
        """(waiting, pending) now, both lanes together; also sets the queue gauges."""
        length = pending = 0
        for stream in self.keys.lanes:
            length += await self.redis.xlen(stream)
            try:
                pending += (await self.redis.xpending(stream, self.keys.group))["pending"]
            except Exception as exc:
                if not is_missing_group(exc):
                    raise
        waiting = max(0, length - pending)
        metrics.QUEUE_DEPTH.set(waiting)
        metrics.QUEUE_PENDING.set(pending)
        return waiting, pending


def _dead_fields(fields: Fields) -> dict[str, bytes | str]:
    """A dead letter's copy of a job's fields: the image kept up to ``DEAD_LETTER_IMAGE_BYTES`` (its size always), so
    the dead-letter stream is bounded by ``dead_letter_maxlen`` x that, not x the image cap."""
    dead: dict[str, bytes | str] = {k.decode(errors="replace"): v for k, v in fields.items()}
    image = dead.get("image", b"")
    dead["image_size"] = str(len(image))
    if len(image) > DEAD_LETTER_IMAGE_BYTES:
        dead["image"] = b""
    return dead


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _job_id(d: Delivery) -> str:
    return d.job.job_id if d.job else f"entry {d.entry_id}"
