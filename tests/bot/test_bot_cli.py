"""`captionbot bot` on its own process: connects (here to a stand-in), reports ready, and serves the queue's
workers' captions; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from bot_story import replies, turn_on
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost

if TYPE_CHECKING:
    from captionbot.queue.worker import Worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def readyz(port: int) -> int:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as resp:
            return resp.status
    except aiohttp.ClientError:
        return 0


async def test_the_bot_process_reports_ready_and_describes_photos(
        standin: StandIn, redis_url: str, worker: Worker, photos: list[FileToPost], tmp_path: Path) -> None:
    health_port = free_port()
    env = {k: v for k, v in os.environ.items() if "DISCORD_TOKEN" not in k}
    env.update(CAPTIONBOT_REDIS_URL=redis_url,
               CAPTIONBOT_METRICS_PORT=str(health_port))
    log = tmp_path / "bot.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "captionbot.cli", "bot", "--standin", standin.base_url],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        async with asyncio.timeout(30):
            while await readyz(health_port) != 200:
                assert proc.poll() is None, log.read_text()[-3000:]
                await asyncio.sleep(0.1)
        await turn_on(standin, "alt-text")
        posted = await standin.post_message("alt-text", "alice", files=[photos[0]])
        [reply] = await replies(standin, posted, timeout=30)
        assert reply.content.startswith("Image description: ")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert "standin-token" not in log.read_text(), "the token never reaches the log"


def test_bot_command_without_a_token_exits_2_and_says_what_to_set() -> None:
    env = {k: v for k, v in os.environ.items() if "DISCORD_TOKEN" not in k}
    proc = subprocess.run([sys.executable, "-m", "captionbot.cli", "bot"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "no DISCORD_TOKEN" in proc.stderr and "Traceback" not in proc.stderr
