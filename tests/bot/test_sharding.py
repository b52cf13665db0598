"""The bot past one process: two ``captionbot bot`` processes, one shard each of two, against a stand-in with two
servers (one per shard), a real Redis and a real worker. Each server is answered by exactly one process; slash
commands are synced once; each process reads its own result stream."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import discord.gateway
import discord.http
import pytest
import redis
from bot_story import answered, quiet, replies, turn_on
from captionbot.bot.standin import StandIn, point_discord_at
from captionbot.bot.standin.server import FileToPost
from captionbot.bot.standin.world import shard_of
from test_bot_cli import free_port, readyz

from captionbot.settings import Settings

if TYPE_CHECKING:
    from captionbot.queue.worker import Worker


@pytest.fixture
async def two_guilds() -> AsyncIterator[StandIn]:
    """A stand-in with two servers: "Stand-in Guild" on shard 0 of 2, "Second Guild" on shard 1 of 2."""
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    s = StandIn(guilds=2)
    await s.start()
    point_discord_at(s.base_url)
    yield s
    await s.stop()
    discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


class BotProcess:
    """``captionbot bot --standin URL`` in its own process, with shard settings from the environment."""

    def __init__(self, standin: StandIn, settings: Settings, log: Path, **shard_env: str) -> None:
        self.health_port = free_port()
        self.log = log
        env = {k: v for k, v in os.environ.items() if "DISCORD_TOKEN" not in k and not k.startswith("CAPTIONBOT_")}
        assert settings.redis_url is not None
        env.update(CAPTIONBOT_REDIS_URL=settings.redis_url.get_secret_value(), CAPTIONBOT_STREAM=settings.stream,
                   CAPTIONBOT_METRICS_PORT=str(self.health_port), CAPTIONBOT_BEAM_SIZE=str(settings.beam_size),
                   CAPTIONBOT_MAX_IMAGE_BYTES=str(settings.max_image_bytes), **shard_env)
        with open(log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "captionbot.cli", "bot", "--standin", standin.base_url],
                                         env=env, stdout=out, stderr=subprocess.STDOUT)

    async def wait_ready(self, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            while await readyz(self.health_port) != 200:
                assert self.proc.poll() is None, self.log.read_text()[-3000:]
                await asyncio.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def bot_processes(tmp_path: Path) -> Iterator[list[BotProcess]]:
    started: list[BotProcess] = []
    yield started
    for p in started:
        p.stop()


async def test_two_bot_processes_with_two_shards_answer_each_server_exactly_once(
        two_guilds: StandIn, settings: Settings, worker: Worker, photos: list[FileToPost], tmp_path: Path,
        bot_processes: list[BotProcess]) -> None:
    standin, world = two_guilds, two_guilds.world
    first, second = world.guild_ids
    assert (shard_of(first, 2), shard_of(second, 2)) == (0, 1)
    # Shard 0 by explicit ids; shard 1 as a StatefulSet pod does it: its ordinal, from its name.
    bot_processes.append(BotProcess(standin, settings, tmp_path / "shard0.log",
                                    CAPTIONBOT_SHARD_COUNT="2", CAPTIONBOT_SHARD_IDS="0"))
    bot_processes.append(BotProcess(standin, settings, tmp_path / "shard1.log", CAPTIONBOT_SHARD_COUNT="2",
                                    CAPTIONBOT_SHARDS_PER_PROCESS="1", CAPTIONBOT_PROCESS_INDEX="captionbot-bot-1"))
    shard0, shard1 = bot_processes
    await asyncio.gather(shard0.wait_ready(), shard1.wait_ready())
    assert sorted(s for s in standin.gateway.identified_shards if s) == [(0, 2), (1, 2)]
    assert standin.gateway.identified_shards.count(None) == 0, "every connection identified with its shard"

    # Commands are global: synced once, by the process with shard 0.
    assert [s.kind for s in standin.sent].count("commands") == 1

    # Both servers' moderators switch alt text on (each command answered by its server's shard), then post.
    await turn_on(standin, "alt-text")
    state = await standin.slash("second-general", "mod", "alttext on",
                                channel=world.channel("second-alt-text"))
    assert "on" in (await answered(standin, state)).content.lower()
    posts = [await standin.post_message(ch, "alice", files=[photos[i]])
             for i, ch in enumerate(("alt-text", "second-alt-text", "alt-text", "second-alt-text"))]
    for post in posts:
        [reply] = await replies(standin, post, timeout=60)
        assert reply.content.startswith("Image description: ")
    slashes = [await standin.slash(ch, "bob", "caption", image=photos[4 + i])
               for i, ch in enumerate(("general", "second-general"))]
    for s in slashes:
        assert (await answered(standin, s, timeout=60)).content.startswith("Image description: ")
    await quiet(standin, 1.5)
    for post in posts:
        assert len(standin.replies_to(post)) == 1, f"answered more than once: {standin.summary()}"
    for s in slashes:
        assert len([a for a in standin.answers_to(s.id) if a.kind != "defer"]) == 1

    # Per-process result streams: one per bot process, as with one process.
    r = redis.Redis.from_url(settings.redis_url.get_secret_value() if settings.redis_url else "")
    streams = {k.decode() for k in r.scan_iter(f"{settings.redis_keys.results('')}*")}
    r.close()
    assert len(streams) == 2, streams

    # Each process holds exactly its server: with shard 1's process stopped, the second server goes unanswered
    # and the first is still answered.
    assert shard1.stop() == 0
    lonely = await standin.post_message("second-alt-text", "alice", files=[photos[6]])
    served = await standin.post_message("alt-text", "alice", files=[photos[7]])
    assert (await replies(standin, served, timeout=60))[0].content.startswith("Image description: ")
    await quiet(standin, 2)
    assert standin.replies_to(lonely) == []
    assert shard0.stop() == 0
    logs = [p.log.read_text() for p in bot_processes]
    assert "shard(s) 0 of 2, in 1 guild(s)" in logs[0], logs[0][-2000:]
    assert "shard(s) 1 of 2, in 1 guild(s)" in logs[1], logs[1][-2000:]
    assert all("standin-token" not in text for text in logs)


@pytest.mark.parametrize(("env", "named"), [
    ({"CAPTIONBOT_SHARD_IDS": "0"}, "CAPTIONBOT_SHARD_COUNT"),
    ({"CAPTIONBOT_SHARD_COUNT": "2", "CAPTIONBOT_SHARD_IDS": "2"}, "shard 2 does not exist"),
    ({"CAPTIONBOT_SHARD_COUNT": "4", "CAPTIONBOT_SHARDS_PER_PROCESS": "2",
      "CAPTIONBOT_PROCESS_INDEX": "captionbot-bot-2"}, "run 2 process(es)"),
    ({"CAPTIONBOT_SHARD_COUNT": "0"}, "CAPTIONBOT_SHARD_COUNT"),
])
def test_bad_shard_settings_stop_the_bot_at_start_with_one_line_naming_them(env: dict[str, str], named: str) -> None:
    base = {k: v for k, v in os.environ.items() if "DISCORD_TOKEN" not in k and not k.startswith("CAPTIONBOT_")}
    proc = subprocess.run([sys.executable, "-m", "captionbot.cli", "bot", "--standin", "http://127.0.0.1:9"],
                          env={**base, **env}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    [line] = proc.stderr.strip().splitlines()
    assert "bot cannot start: " in line and named in line
