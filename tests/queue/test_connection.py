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


def test_without_a_url_or_the_embedded_backend_the_worker_says_what_to_set() -> None:
    """A deployed image has no fakeredis: a worker started there without CAPTIONBOT_REDIS_URL exits 2 and says so."""
    import os
    import subprocess
    import sys

    code = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'fakeredis' or name.startswith('fakeredis.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from captionbot.cli import main\n"
        "sys.exit(main(['worker', '--test-model', 'null']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CAPTIONBOT_REDIS_URL"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "CAPTIONBOT_REDIS_URL is not set" in proc.stderr and "Traceback" not in proc.stderr
