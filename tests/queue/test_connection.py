"""Where the queue lives: a real Redis from the URL, or one in-process backend shared by the whole process."""

from __future__ import annotations

from captionbot.queue.connection import connect_redis, describe
from captionbot.settings import load_settings


async def test_embedded_connections_in_one_process_share_the_same_streams() -> None:
    settings = load_settings(redis_url="", stream="conn-test:jobs")  # empty, as in a .env: embedded
    bot_side, worker_side = await connect_redis(settings), await connect_redis(settings)
    await bot_side.xadd("conn-test:jobs", {"job": "1"})
    assert await worker_side.xlen("conn-test:jobs") == 1
    await bot_side.delete("conn-test:jobs")


async def test_real_redis_url_connects_and_logs_never_show_the_password(redis_url: str) -> None:
    settings = load_settings(redis_url=redis_url.replace("redis://", "redis://:topsecret@"))
    assert "topsecret" not in describe(settings) and "127.0.0.1" in describe(settings)
    assert "topsecret" not in repr(settings)
    plain = await connect_redis(load_settings(redis_url=redis_url))
    assert await plain.ping()
    await plain.aclose()
