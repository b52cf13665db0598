"""Alt-text settings per guild and per channel, kept in Redis: one hash per guild (``RedisKeys.guild_settings``).

A channel setting overrides the guild's, field by field; anything unset falls back to the defaults (alt text
off, only images without alt text, no heatmap, uncertain descriptions posted, nothing spoken). Turning alt text on
or off for the whole server clears the per-channel overrides, so "off for the server" means off everywhere.

In the guild's hash, ``enabled`` is the server's value and ``<channel id>:enabled`` a channel's: reading what
applies in a channel is one HMGET, and a server-wide change is one script over that hash, never a SCAN.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.typing import EncodableT

from captionbot.formats import RedisKeys

log = logging.getLogger(__name__)
FIELDS = ("enabled", "all_images", "heatmap", "skip_uncertain", "voice")  # flags, stored as "1" / "0"
LENGTHS = ("short", "model", "text")  # how much a description says (AltTextSettings.length)
DEFAULT_LENGTH = "text"
MODES = ("reply", "repost")  # how a description is posted (AltTextSettings.mode); repost: see bot/repost.py
DEFAULT_MODE = "reply"
# Before the per-guild hash, each guild and each channel had a hash of its own under this fixed prefix.
LEGACY_PREFIX = "captionbot:settings:guild:"

# Set server-wide fields and drop every channel's override of them, in one step.
# KEYS: the guild's hash.  ARGV: field, value, ...
SET_SERVER = """
local drop = {}
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  local field = string.match(name, '^%d+:(.+)$')
  for i = 1, #ARGV, 2 do
    if field == ARGV[i] then drop[#drop + 1] = name end
  end
end
if #drop > 0 then redis.call('HDEL', KEYS[1], unpack(drop)) end
return redis.call('HSET', KEYS[1], unpack(ARGV))
"""


@dataclass(frozen=True)
class AltTextSettings:
    enabled: bool = False
    all_images: bool = False  # False: only images without alt text
    heatmap: bool = False
    skip_uncertain: bool = False  # True: descriptions the model is unsure of are not posted (formats.UNCERTAIN_BELOW)
    # short: the description cut to a few words; model: as the model wrote it; text: and any text read in the image
    length: str = DEFAULT_LENGTH
    # reply: a reply under the image; repost: the image posted again through a webhook with the description as
    # its alt text, the original deleted (a channel setting only: it needs Manage Webhooks and Manage Messages)
    mode: str = DEFAULT_MODE
    voice: bool = False  # True: the reply also carries the description spoken, as description.ogg (bot/speech.py)
    source: str = "default"  # default | server | channel: where ``enabled`` comes from


def _flags(fields: dict[str, bool | str], prefix: str = "") -> dict[EncodableT, EncodableT]:
    """Flags as "1" / "0", the length as its name."""
    return {f"{prefix}{k}": v if isinstance(v, str) else "1" if v else "0" for k, v in fields.items()}


def _length(value: bytes | str | None) -> str | None:
    text = value.decode() if isinstance(value, bytes) else value
    return text if text in LENGTHS else None


def _mode(value: bytes | str | None) -> str | None:
    text = value.decode() if isinstance(value, bytes) else value
    return text if text in MODES else None


def _read(values: Sequence[bytes | str | None]) -> dict[str, bool]:
    return {k: v in (b"1", "1") for k, v in zip(FIELDS, values, strict=True) if v is not None}


class SettingsStore:
    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys
        self._set_server = redis.register_script(SET_SERVER)

    async def effective(self, guild_id: int, channel_id: int) -> AltTextSettings:
        """What applies in this channel now."""
        names = (*FIELDS, "length", "mode")
        values = await self.redis.hmget(self.keys.guild_settings(guild_id),
                                        [*names, *(f"{channel_id}:{k}" for k in names)])
        n, f = len(names), len(FIELDS)
        guild, channel = _read(values[:f]), _read(values[n:n + f])
        merged = {**guild, **channel}
        source = "channel" if "enabled" in channel else "server" if "enabled" in guild else "default"
        length = _length(values[n + f]) or _length(values[f]) or DEFAULT_LENGTH
        mode = _mode(values[n + f + 1]) or _mode(values[f + 1]) or DEFAULT_MODE
        return AltTextSettings(**{k: merged.get(k, False) for k in FIELDS}, length=length, mode=mode, source=source)

    async def set_server(self, guild_id: int, **fields: bool | str) -> None:
        """Set for the whole server and drop every channel override of the fields set."""
        args = [x for kv in _flags(fields).items() for x in kv]
        await self._set_server(keys=[self.keys.guild_settings(guild_id)], args=args)

    async def set_channel(self, guild_id: int, channel_id: int, **fields: bool | str) -> None:
        await self.redis.hset(self.keys.guild_settings(guild_id), mapping=_flags(fields, f"{channel_id}:"))

    async def set_opted_out(self, guild_id: int, user_id: int, opted_out: bool) -> None:
        """A member's choice that automatic alt text leave their images alone in this guild (or not)."""
        key = self.keys.opted_out(guild_id)
        await (self.redis.sadd(key, str(user_id)) if opted_out else self.redis.srem(key, str(user_id)))

    async def opted_out(self, guild_id: int, user_id: int) -> bool:
        return bool(await self.redis.sismember(self.keys.opted_out(guild_id), str(user_id)))

    async def migrate_legacy(self) -> int:
        """Move settings kept under the old per-guild and per-channel keys into the guild hashes; returns how many
        old keys were moved. Run once at start-up (it SCANs for them); a value already in a guild hash wins."""
        moved = 0
        async for raw in self.redis.scan_iter(match=f"{LEGACY_PREFIX}*", count=500):
            key = raw.decode() if isinstance(raw, bytes) else raw
            guild, _, channel = key.removeprefix(LEGACY_PREFIX).partition(":channel:")
            if not guild.isdigit() or (channel and not channel.isdigit()):
                continue
            old = {(k.decode() if isinstance(k, bytes) else k): v for k, v in (await self.redis.hgetall(key)).items()}
            prefix = f"{channel}:" if channel else ""
            for name in FIELDS:
                if name in old:
                    await self.redis.hsetnx(self.keys.guild_settings(int(guild)), prefix + name, old[name])
            await self.redis.delete(key)
            moved += 1
        if moved:
            log.info("moved %d alt-text settings from the old key layout", moved)
        return moved
