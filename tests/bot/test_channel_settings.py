"""Alt-text settings live in Redis: a channel overrides the server; the server-wide switch clears overrides."""

from __future__ import annotations

from captionbot.bot.channel_settings import AltTextSettings, SettingsStore
from redis.asyncio import Redis


async def test_channel_overrides_server_and_server_switch_resets_channels(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    store = SettingsStore(redis)
    try:
        assert await store.effective(1, 10) == AltTextSettings()
        await store.set_server(1, enabled=True, heatmap=True)
        await store.set_channel(1, 10, enabled=False)
        assert await store.effective(1, 10) == AltTextSettings(enabled=False, heatmap=True, source="channel")
        assert await store.effective(1, 11) == AltTextSettings(enabled=True, heatmap=True, source="server")
        assert await store.effective(2, 10) == AltTextSettings(), "another guild is untouched"

        await store.set_server(1, enabled=False)
        assert (await store.effective(1, 10)).source == "server", "server-wide off means off everywhere"
        assert all(k.startswith(b"captionbot:settings:") for k in await redis.keys("*"))
    finally:
        await redis.aclose()
