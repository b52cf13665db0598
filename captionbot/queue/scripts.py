"""The queue's atomic steps, as Lua scripts run inside Redis (each all-or-nothing, even across a crash).

Arguments are flat lists; stream fields are passed as alternating name/value strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

# Add a job unless the stream already holds ``maxlen`` entries or ``max_bytes`` bytes of jobs (the byte count is
# kept in KEYS[2]: added here, taken off when a job is answered or discarded; reset whenever the stream is empty).
# KEYS: jobs, bytes.  ARGV: maxlen, max_bytes, job bytes, field, value, ...
# Returns the new entry id; 0 when the stream holds maxlen jobs, -1 when the job would pass max_bytes (BUSY).
ENQUEUE_IF_ROOM = """
local n = redis.call('XLEN', KEYS[1])
if n >= tonumber(ARGV[1]) then return 0 end
local used = 0
if n == 0 then redis.call('DEL', KEYS[2]) else used = tonumber(redis.call('GET', KEYS[2]) or '0') end
if used + tonumber(ARGV[3]) > tonumber(ARGV[2]) then return -1 end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
redis.call('INCRBY', KEYS[2], ARGV[3])
return id
"""

# Take a removed job's bytes off the count (never below 0).
_UNCOUNT = """
local function uncount(key, size)
  if tonumber(redis.call('DECRBY', key, size)) < 0 then redis.call('SET', key, 0) end
end
"""

# Answer a job: acknowledge and delete its stream entry; optionally record it in the dead-letter stream; publish the
# result to the requester's stream unless the job was already answered.
# KEYS: jobs, reply_to, answered-mark, bytes, [dead]
# ARGV: group, entry id, ttl_ms, results_maxlen, dead_maxlen, job bytes, n, <n result args>, <dead-letter args>
# Returns 1 published; 0 the entry was no longer pending (another worker answered it); 2 the job id was answered;
# -1 reply_to is a key of another type (nothing was changed: the caller dead-letters the job unanswered).
FINISH = _UNCOUNT + """
local t = redis.call('TYPE', KEYS[2])['ok']
if t ~= 'stream' and t ~= 'none' then return -1 end
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if acked == 0 then return 0 end
uncount(KEYS[4], ARGV[6])
local n = tonumber(ARGV[7])
if KEYS[5] then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 8 + n))
end
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) then return 2 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 8, 7 + n))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

# Drop an entry that cannot be answered (unreadable fields): record it in the dead-letter stream, ack, delete.
# KEYS: jobs, dead, bytes.  ARGV: group, entry id, dead_maxlen, job bytes, field, value, ...
DISCARD = _UNCOUNT + """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if acked == 0 then return 0 end
uncount(KEYS[3], ARGV[4])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 5))
return 1
"""


def entry_bytes(fields: Mapping[Any, bytes | str]) -> int:
    """A job entry's size as the byte budget counts it: its field names and values, UTF-8 (the same number on the
    bot's side, from the fields it sends, and the worker's, from the fields it reads)."""
    return sum(len(_b(k)) + len(_b(v)) for k, v in fields.items())


def _b(v: bytes | str) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode()


def flatten(fields: dict[str, bytes | str]) -> list[bytes | str]:
    """``{"a": 1, "b": 2}`` -> ``["a", 1, "b", 2]`` for a script's ARGV."""
    out: list[bytes | str] = []
    for k, v in fields.items():
        out += [k, v]
    return out


class QueueScripts:
    """The scripts registered on one connection (redis-py reloads them by itself after a Redis restart)."""

    def __init__(self, redis: Redis) -> None:
        self.enqueue_if_room: AsyncScript = redis.register_script(ENQUEUE_IF_ROOM)
        self.finish: AsyncScript = redis.register_script(FINISH)
        self.discard: AsyncScript = redis.register_script(DISCARD)
