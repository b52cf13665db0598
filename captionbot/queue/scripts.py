"""The queue's atomic steps, as Lua scripts run inside Redis (each all-or-nothing, even across a crash).

Arguments are flat lists; stream fields are passed as alternating name/value strings.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

# Add a job unless the stream already holds ``maxlen`` entries.  KEYS: jobs.  ARGV: maxlen, field, value, ...
# Returns the new entry id, or nil when full (the caller answers BUSY).
ENQUEUE_IF_ROOM = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
"""

# Answer a job: acknowledge and delete its stream entry; optionally record it in the dead-letter stream; publish the
# result to the requester's stream unless the job was already answered.
# KEYS: jobs, reply_to, answered-mark, [dead]
# ARGV: group, entry id, ttl_ms, results_maxlen, dead_maxlen, n, <n result args>, <dead-letter args>
# Returns 1 published; 0 the entry was no longer pending (another worker answered it); 2 the job id was answered;
# -1 reply_to is a key of another type (nothing was changed: the caller dead-letters the job unanswered).
FINISH = """
local t = redis.call('TYPE', KEYS[2])['ok']
if t ~= 'stream' and t ~= 'none' then return -1 end
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if acked == 0 then return 0 end
local n = tonumber(ARGV[6])
if KEYS[4] then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 7 + n))
end
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) then return 2 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 7, 6 + n))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

# Drop an entry that cannot be answered (unreadable fields): record it in the dead-letter stream, ack, delete.
# KEYS: jobs, dead.  ARGV: group, entry id, dead_maxlen, field, value, ...
DISCARD = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if acked == 0 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
return 1
"""


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
