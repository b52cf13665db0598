"""Alt-text settings per guild and per channel, kept in Redis (keys ``captionbot:settings:...``).

A channel setting overrides the guild's, field by field; anything unset falls back to the defaults (alt text
off, only images without alt text, no heatmap). Turning alt text on or off for the whole server clears the
per-channel overrides, so "off for the server" means off everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

PREFIX = "captionbot:settings:"
FIELDS = ("enabled", "all_images", "heatmap")


@dataclass(frozen=True)
class AltTextSettings:
    enabled: bool = False
    all_images: bool = False  # False: only images without alt text
    heatmap: bool = False
    source: str = "default"  # default | server | channel: where ``enabled`` comes from


def guild_key(guild_id: int) -> str:
    return f"{PREFIX}guild:{guild_id}"


def channel_key(guild_id: int, channel_id: int) -> str:
    return f"{PREFIX}guild:{guild_id}:channel:{channel_id}"


def _decode(raw: dict[bytes | str, bytes | str]) -> dict[str, bool]:
    out = {}
    for k, v in raw.items():
        k = k.decode() if isinstance(k, bytes) else k
        v = v.decode() if isinstance(v, bytes) else v
        if k in FIELDS:
            out[k] = v == "1"
    return out


class SettingsStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def effective(self, guild_id: int, channel_id: int) -> AltTextSettings:
        """What applies in this channel now."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(guild_key(guild_id))
        pipe.hgetall(channel_key(guild_id, channel_id))
        guild_raw, channel_raw = await pipe.execute()
        guild, channel = _decode(guild_raw), _decode(channel_raw)
        merged = {**guild, **channel}
        source = "channel" if "enabled" in channel else "server" if "enabled" in guild else "default"
        return AltTextSettings(**{k: merged.get(k, False) for k in FIELDS}, source=source)

    async def set_server(self, guild_id: int, **fields: bool) -> None:
        """Set for the whole server and drop every channel override of the fields set."""
        await self.redis.hset(guild_key(guild_id), mapping={k: "1" if v else "0" for k, v in fields.items()})
        async for key in self.redis.scan_iter(match=f"{guild_key(guild_id)}:channel:*", count=500):
            await self.redis.hdel(key, *fields)

    async def set_channel(self, guild_id: int, channel_id: int, **fields: bool) -> None:
        await self.redis.hset(channel_key(guild_id, channel_id),
                              mapping={k: "1" if v else "0" for k, v in fields.items()})
