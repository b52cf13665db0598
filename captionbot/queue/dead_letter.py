"""Reading the dead-letter stream: the jobs the workers gave up on, and why (for operators and tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from captionbot.queue.streams import Entries, Fields
from captionbot.settings import Settings


@dataclass
class DeadLetter:
    entry_id: str
    job_id: str
    reason: str
    attempts: int
    worker: str
    image_bytes: int  # the image's size; the entry keeps the image itself when it is at most 1 MiB


async def read_dead_letters(redis: Redis, settings: Settings, count: int = 100) -> list[DeadLetter]:
    """The most recent ``count`` dead letters, newest first."""
    keys = settings.redis_keys
    out = []
    for entry_id, f in cast(Entries, await redis.xrevrange(keys.dead, count=count)):
        def s(name: str, fields: Fields = f) -> str:
            v = fields.get(name.encode(), b"")
            return v.decode(errors="replace") if isinstance(v, bytes) else str(v)

        out.append(DeadLetter(
            entry_id=entry_id.decode(), job_id=s("job_id"), reason=s("reason"),
            attempts=int(s("attempts") or 0), worker=s("worker"),
            image_bytes=int(s("image_size") or len(f.get(b"image", b""))),
        ))
    return out
