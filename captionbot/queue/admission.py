"""Answering "is there room in the queue?" fast when many callers ask at once.

The enqueue script (``scripts.ENQUEUE_IF_ROOM``) decides, atomically, whether a job is queued; but to run it the
client first ships the whole job, image included, to Redis. Alone that is nothing (a BUSY on a full queue comes
back in about a millisecond); inside a flood, hundreds of callers each shipping an image to a full queue made a
BUSY wait behind megabytes that Redis only refused (issue 17 item 7). So while other enqueues from this client are
in flight, a caller with a job over ``ASK_ABOVE_BYTES`` first asks the small question, shared by every caller
asking at the same moment: one pipelined ``XLEN`` + ``GET <bytes>``. (A smaller job costs no more to send than the
question, and asking would only delay a burst that fits, by one round trip, which split a burst across a worker's
batches.) The room it reports is handed out to those callers (a job slot and its bytes each); a caller left
without room is told BUSY at once, without sending its image. The answer is at most one round trip old, and the
script still has the last word, so the queue never holds more than its bounds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.asyncio import Redis

from captionbot.queue.connection import within

ASK_ABOVE_BYTES = 64 * 1024  # jobs at most this big are offered straight away, even inside a flood


@dataclass
class Room:
    """What Redis reported, less what callers sharing the answer have taken since."""

    slots: int
    bytes_left: int

    def take(self, size: int, maxlen: int, max_bytes: int) -> str:
        """Take room for a job of ``size`` bytes: "" when there is some, else why the queue is full."""
        if self.slots <= 0:
            return f"queue holds {maxlen} jobs"
        if size > self.bytes_left:
            return f"queue holds close to {max_bytes} bytes of jobs"
        self.slots -= 1
        self.bytes_left -= size
        return ""


class Admission:
    """The shared room question of one client. ``check`` before offering a job, ``offering`` around the offer."""

    def __init__(self, redis: Redis, stream: str, bytes_key: str, maxlen: int, max_bytes: int) -> None:
        self.redis = redis
        self.stream = stream  # the lane this admission answers for, and its byte count
        self.bytes_key = bytes_key
        self.maxlen = maxlen
        self.max_bytes = max_bytes
        self.in_flight = 0  # enqueues of this client sent to Redis and not yet answered
        self._asking: asyncio.Future[Room] | None = None

    async def check(self, size: int, deadline: float) -> str:
        """"" when the job may be offered to Redis, else why the queue is full. Alone (no other enqueue in flight)
        or for a small job, always "": the enqueue script answers as fast as the question would. Raises what a
        Redis call raises (``REDIS_DOWN_ERRORS``, ``DeadlineExceeded``)."""
        if self.in_flight == 0 or size <= ASK_ABOVE_BYTES:
            return ""
        if self._asking is None or self._asking.done():
            self._asking = asyncio.ensure_future(self._ask())
        room = await within(deadline, asyncio.shield(self._asking))
        return room.take(size, self.maxlen, self.max_bytes)

    def offering(self) -> _Offering:
        """Context manager counting an enqueue in flight while it runs."""
        return _Offering(self)

    async def _ask(self) -> Room:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.stream)
            pipe.get(self.bytes_key)
            length, used = await pipe.execute()
        used_bytes = int(used or 0) if length else 0  # the count resets when the stream is empty
        return Room(slots=self.maxlen - int(length), bytes_left=self.max_bytes - used_bytes)


class _Offering:
    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    def __enter__(self) -> None:
        self.admission.in_flight += 1

    def __exit__(self, *exc: object) -> None:
        self.admission.in_flight -= 1
