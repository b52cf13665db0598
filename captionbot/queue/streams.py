"""The queue's streams in Redis: the consumer group every worker joins, and the errors a vanished group gives.

Key names are :class:`captionbot.formats.RedisKeys` (``settings.redis_keys``): one object for every key.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from captionbot.formats import RedisKeys

Fields = dict[bytes, bytes]  # one stream entry's fields, as the queue's connections return them (bytes)
Entries = list[tuple[bytes, Fields]]  # XRANGE / XREVRANGE
StreamReply = list[tuple[bytes, Entries]] | None  # XREAD / XREADGROUP: entries per stream, None when none came


async def ensure_group(redis: Redis, keys: RedisKeys) -> None:
    """Create the consumer group (and the stream) on both lanes (``keys.lanes``) unless it exists.

    The group starts at id 0, not ``$``: jobs added before any worker existed, or re-added after Redis lost the
    group, are still delivered.
    """
    for stream in keys.lanes:
        try:
            await redis.xgroup_create(stream, keys.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def is_missing_group(exc: Exception) -> bool:
    """True for the error Redis gives when the stream or group vanished (e.g. a restart without persistence)."""
    return isinstance(exc, ResponseError) and "NOGROUP" in str(exc)
