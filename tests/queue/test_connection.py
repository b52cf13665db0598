"""Where the queue lives: a real Redis from the URL, or one in-process backend shared by the whole process."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import redis as redis_lib
from queue_harness import WorkerProcess, photo, queue_settings

from captionbot.queue.client import CaptionClient
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


PASSWORD = "s3/cr?t#pa@ss:w0rd"  # every character that ends a URL's user part, as an operator would type it


def test_a_password_with_url_characters_serves_jobs_and_is_never_printed(
    make_redis_server: Callable[..., Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    """Typed as is or percent-encoded, a password holding / ? # @ : works; no piece of it reaches the output."""
    server = make_redis_server(appendonly=False)
    with redis_lib.Redis(port=server.port) as admin:
        admin.config_set("requirepass", PASSWORD)

    async def one_job(url: str) -> None:
        settings = queue_settings(url, metrics_port=0)
        worker = spawn_worker(settings, "pw-worker")
        client = await CaptionClient.connect(settings)
        result = await client.caption(photo(1), timeout=20)
        await client.close()
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(timeout=10) == 0
        out = worker.output()
        assert result.ok, out
        assert not any(PASSWORD[i:i + 4] in out for i in range(len(PASSWORD) - 3)), out

    typed = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
    encoded = f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}/0"
    asyncio.run(one_job(typed))
    asyncio.run(one_job(encoded))
    settings = load_settings(redis_url=typed)
    assert describe(settings) == f"redis://127.0.0.1:{server.port}/0"


def test_a_bad_redis_url_exits_2_in_one_line_without_the_password() -> None:
    import os
    import subprocess
    import sys

    for url in (f"redis://:{PASSWORD}@127.0.0.1:notaport/0", f"http://:{PASSWORD}@127.0.0.1/0"):
        env = dict(os.environ, CAPTIONBOT_REDIS_URL=url)
        proc = subprocess.run([sys.executable, "-m", "captionbot.cli", "worker", "--test-model", "null"],
                              env=env, capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, out[-2000:]
        assert "Traceback" not in out and "CAPTIONBOT_REDIS_URL" in out
        assert not any(PASSWORD[i:i + 4] in out for i in range(len(PASSWORD) - 3)), out
