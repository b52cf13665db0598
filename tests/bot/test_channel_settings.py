"""Alt-text settings live in Redis: a channel overrides the server; the server-wide switch clears overrides."""

from __future__ import annotations

from captionbot.bot.channel_settings import LEGACY_PREFIX, AltTextSettings, SettingsStore
from redis.asyncio import Redis

from captionbot.formats import RedisKeys

KEYS = RedisKeys(jobs="test:settings:jobs")


async def test_channel_overrides_server_and_server_switch_resets_channels(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    store = SettingsStore(redis, KEYS)
    try:
        assert await store.effective(1, 10) == AltTextSettings()
        await store.set_server(1, enabled=True, heatmap=True)
        await store.set_channel(1, 10, enabled=False)
        assert await store.effective(1, 10) == AltTextSettings(enabled=False, heatmap=True, source="channel")
        assert await store.effective(1, 11) == AltTextSettings(enabled=True, heatmap=True, source="server")
        assert await store.effective(2, 10) == AltTextSettings(), "another guild is untouched"

        await store.set_server(1, enabled=False)
        assert (await store.effective(1, 10)).source == "server", "server-wide off means off everywhere"
        assert all(k.startswith(KEYS.jobs.encode() + b":") for k in await redis.keys("*"))
    finally:
        await redis.aclose()


async def test_a_server_wide_change_clears_only_the_fields_it_sets_and_never_scans(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    store = SettingsStore(redis, KEYS)
    try:
        for n in range(200):  # other keys in the same Redis: a SCAN would have to walk them all
            await redis.set(f"other:{n}", 1)
        await store.set_channel(1, 10, enabled=True, heatmap=True)
        await store.set_channel(1, 11, all_images=True)
        await store.set_channel(2, 20, enabled=True)
        await redis.config_resetstat()
        await store.set_server(1, heatmap=False)
        stats = await redis.info("commandstats")
        assert any(name.endswith("hkeys") for name in stats), "the change ran (and is counted here)"
        assert not any(name.endswith("scan") for name in stats), sorted(stats)
        assert await store.effective(1, 10) == AltTextSettings(enabled=True, heatmap=False, source="channel")
        assert (await store.effective(1, 11)).all_images, "a field the server did not set keeps its override"
        assert (await store.effective(2, 20)).enabled, "another guild keeps its settings"
    finally:
        await redis.aclose()


async def test_settings_saved_under_the_old_key_layout_are_kept(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    store = SettingsStore(redis, KEYS)
    try:
        await redis.hset(f"{LEGACY_PREFIX}1", mapping={"enabled": "1", "heatmap": "1"})
        await redis.hset(f"{LEGACY_PREFIX}1:channel:10", mapping={"enabled": "0"})
        assert await store.migrate_legacy() == 2
        assert await store.effective(1, 10) == AltTextSettings(enabled=False, heatmap=True, source="channel")
        assert await store.effective(1, 11) == AltTextSettings(enabled=True, heatmap=True, source="server")
        assert await redis.keys(f"{LEGACY_PREFIX}*") == []
        assert await store.migrate_legacy() == 0
    finally:
        await redis.aclose()


async def test_the_description_length_is_kept_per_channel_over_the_server(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    store = SettingsStore(redis, KEYS)
    try:
        assert (await store.effective(5, 50)).length == "text", "default: with any text read in the image"
        await store.set_server(5, enabled=True, length="model")
        await store.set_channel(5, 50, length="short")
        assert (await store.effective(5, 50)).length == "short"
        assert (await store.effective(5, 51)).length == "model"
        await store.set_server(5, enabled=True, length="text")
        assert (await store.effective(5, 50)).length == "text", "a server-wide change clears the channel's"
    finally:
        await redis.aclose()


async def test_repost_mode_is_a_channel_choice_and_an_unknown_mode_reads_as_reply(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    store = SettingsStore(redis, KEYS)
    try:
        await store.set_server(3, enabled=True, mode="reply")
        await store.set_channel(3, 30, enabled=True, mode="repost")
        assert (await store.effective(3, 30)).mode == "repost"
        assert (await store.effective(3, 31)).mode == "reply", "other channels keep replying"
        await redis.hset(KEYS.guild_settings(3), "31:mode", "shout")  # an old or hand-edited value
        assert (await store.effective(3, 31)).mode == "reply"
        await store.set_server(3, enabled=True, mode="reply")
        assert (await store.effective(3, 30)).mode == "reply", "a server-wide change clears the channel's mode"
    finally:
        await redis.aclose()
