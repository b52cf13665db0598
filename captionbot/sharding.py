"""Which Discord shards this bot process runs, from settings (docs/deploy.md, "Many bot processes: shards").

Discord sends each guild's events to one shard, ``(guild_id >> 22) % shard_count``; a bot in more than 2,500
guilds must shard. Settings (environment):

- nothing set: one process, unsharded (as Discord's single connection; fine below 2,500 guilds);
- ``CAPTIONBOT_SHARD_COUNT=N``: N shards, all in this process;
- ``CAPTIONBOT_SHARD_COUNT=N`` + ``CAPTIONBOT_SHARD_IDS=0,1`` or ``0-3``: those shards only;
- ``CAPTIONBOT_SHARD_COUNT=N`` + ``CAPTIONBOT_SHARDS_PER_PROCESS=K`` + ``CAPTIONBOT_PROCESS_INDEX=i`` (a number,
  or a StatefulSet pod name ending in ``-i``): shards ``i*K .. min((i+1)*K, N)-1``; one pod per range.

:func:`plan` checks the combination and raises :class:`ShardSettingsError` (one line naming the variables).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from captionbot.settings import Settings


class ShardSettingsError(ValueError):
    """The shard settings do not fit together; the message names the variables and says what to set."""


@dataclass(frozen=True)
class ShardPlan:
    """``count`` shards in all; this process runs ``ids``."""

    count: int
    ids: tuple[int, ...]

    @property
    def syncs_commands(self) -> bool:
        """Application commands are global: the process with shard 0 syncs them, the others leave it alone."""
        return 0 in self.ids

    def describe(self) -> str:
        return f"shard(s) {format_ids(self.ids)} of {self.count}"


def shard_of(guild_id: int, count: int) -> int:
    """The shard Discord routes a guild's events to."""
    return (guild_id >> 22) % count


def format_ids(ids: tuple[int, ...]) -> str:
    if ids and list(ids) == list(range(ids[0], ids[-1] + 1)) and len(ids) > 2:
        return f"{ids[0]}-{ids[-1]}"
    return ",".join(map(str, ids))


def parse_ids(text: str, count: int) -> tuple[int, ...]:
    """``"0,2"`` / ``"0-3"`` / ``"0-1,5"`` -> sorted shard ids, each in ``0..count-1``, no repeats."""
    ids: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise ShardSettingsError(f"CAPTIONBOT_SHARD_IDS={text!r}: write shard ids like 0,1 or 0-3")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi < lo:
            raise ShardSettingsError(f"CAPTIONBOT_SHARD_IDS={text!r}: range {part} runs backwards")
        ids.extend(range(lo, hi + 1))
    if len(set(ids)) != len(ids):
        raise ShardSettingsError(f"CAPTIONBOT_SHARD_IDS={text!r}: a shard is named twice")
    if bad := [i for i in ids if i >= count]:
        raise ShardSettingsError(f"CAPTIONBOT_SHARD_IDS={text!r}: shard {bad[0]} does not exist with "
                                 f"CAPTIONBOT_SHARD_COUNT={count} (ids run 0-{count - 1})")
    return tuple(sorted(ids))


def parse_index(text: str) -> int:
    """``"2"`` or a StatefulSet pod name like ``"captionbot-bot-2"`` -> 2."""
    m = re.fullmatch(r"(?:.*-)?(\d+)", text.strip())
    if not m:
        raise ShardSettingsError(f"CAPTIONBOT_PROCESS_INDEX={text!r}: give a number, or a StatefulSet pod name "
                                 "ending in -N (the pod's ordinal)")
    return int(m[1])


def plan(settings: Settings) -> ShardPlan | None:
    """This process's shards, or None when unsharded. Raises :class:`ShardSettingsError`."""
    count, ids, per, index = (settings.shard_count, settings.shard_ids, settings.shards_per_process,
                              settings.process_index)
    if count is None:
        given = [n for n, v in (("CAPTIONBOT_SHARD_IDS", ids), ("CAPTIONBOT_SHARDS_PER_PROCESS", per),
                                ("CAPTIONBOT_PROCESS_INDEX", index)) if v is not None]
        if given:
            raise ShardSettingsError(f"{' and '.join(given)} need(s) CAPTIONBOT_SHARD_COUNT (the total number of "
                                     "shards across every bot process)")
        return None
    if ids is not None:
        if per is not None or index is not None:
            raise ShardSettingsError("set either CAPTIONBOT_SHARD_IDS or CAPTIONBOT_SHARDS_PER_PROCESS with "
                                     "CAPTIONBOT_PROCESS_INDEX, not both")
        return ShardPlan(count, parse_ids(ids, count))
    if (per is None) != (index is None):
        raise ShardSettingsError("CAPTIONBOT_SHARDS_PER_PROCESS and CAPTIONBOT_PROCESS_INDEX go together "
                                 "(the StatefulSet sets the index from the pod's name)")
    if per is None or index is None:
        return ShardPlan(count, tuple(range(count)))
    i = parse_index(index)
    first = i * per
    if first >= count:
        needed = -(-count // per)
        raise ShardSettingsError(
            f"CAPTIONBOT_PROCESS_INDEX={index!r} (process {i}) with CAPTIONBOT_SHARDS_PER_PROCESS={per} starts at "
            f"shard {first}, but CAPTIONBOT_SHARD_COUNT={count}: run {needed} process(es) (StatefulSet replicas)")
    return ShardPlan(count, tuple(range(first, min(first + per, count))))
