"""Key names of the queue in Redis, and the consumer group every worker joins."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from captionbot.settings import Settings


@dataclass(frozen=True)
class StreamKeys:
    """All keys derive from ``settings.stream``, so two deployments can share one Redis under different names."""

    jobs: str  # the job stream (bounded by queue_maxlen; answered jobs are deleted from it)
    group: str  # the workers' consumer group

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamKeys:
        return cls(jobs=settings.stream, group=settings.group)

    @property
    def dead(self) -> str:
        """Dead-letter stream: the jobs given up on, with the reason."""
        return f"{self.jobs}:dead"

    @property
    def workers(self) -> str:
        """Hash of live workers: name -> JSON heartbeat (model version, last seen)."""
        return f"{self.jobs}:workers"

    def results(self, instance_id: str) -> str:
        """Result stream of one bot instance (its ``reply_to``)."""
        return f"{self.jobs}:results:{instance_id}"

    def answered(self, job_id: str) -> str:
        """Mark set when a job's result is published (idempotency by job id)."""
        return f"{self.jobs}:answered:{job_id}"


async def ensure_group(redis: Redis, keys: StreamKeys) -> None:
    """Create the consumer group (and the stream) unless it exists.

    The group starts at id 0, not ``$``: jobs added before any worker existed, or re-added after Redis lost the
    group, are still delivered.
    """
    try:
        await redis.xgroup_create(keys.jobs, keys.group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def is_missing_group(exc: Exception) -> bool:
    """True for the error Redis gives when the stream or group vanished (e.g. a restart without persistence)."""
    return isinstance(exc, ResponseError) and "NOGROUP" in str(exc)
