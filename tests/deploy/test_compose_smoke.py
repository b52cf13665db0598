"""The compose deployment on one machine, without Docker: Redis, the bot and two workers as separate processes.

Each process gets exactly what ``deploy/docker-compose.yml`` declares for its service: the command, and the
environment Compose would build (the image's ENV, then the service's ``environment`` resolved against a ``.env``
made from ``.env.example``). Only what a container has and a shared host has not is substituted: the Redis URL (a
private redis-server here), the stand-in's address in place of Discord, one metrics port per process (containers
each have their own network), and the model bundle's path (the worker images bake it in at /app/models/default).

The story: every container passes its healthcheck; a moderator turns alt text on; a user posts a photo and gets
its description; during a burst of photos one worker is stopped (``docker compose stop``: SIGTERM) and exits
cleanly; the other worker finishes the work, and every photo gets exactly one description.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost
from captionbot.bot.standin.world import Message
from deploy_files import DEPLOY, free_port, load_compose, read_dockerfile, read_env_file, service_environment

from captionbot.formats import USER_MESSAGES

pytestmark = pytest.mark.timeout(120)

SERVICES = load_compose()["services"]
IMAGE_BUNDLE = "/app/models/default"
PHOTOS_IN_BURST = 6
PHOTOS_AFTER_STOP = 3


@dataclass
class ServiceProcess:
    """One service's process, started as its container would start it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path) -> None:
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """``docker compose stop``: SIGTERM, then SIGKILL after the grace period. Returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def healthcheck(self, path: str | None = None) -> int:
        """The service's compose healthcheck command, run as ``docker`` runs it: inside the container's env."""
        test = SERVICES[self.name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        argv = test[1:] if path is None else [test[1], path]
        return subprocess.run(argv, env=self.env, capture_output=True, timeout=30).returncode

    def metric(self, name: str, labels: str = "") -> float:
        port = self.env["CAPTIONBOT_METRICS_PORT"]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def log_tail(self) -> str:
        return f"--- {self.name} log ---\n" + self.log_path.read_text(errors="replace")[-3000:]


def container_env(service: str, dotenv: dict[str, str], path: str) -> dict[str, str]:
    """The image's ENV overlaid with the service's compose environment, as Docker builds the container's."""
    dockerfile = SERVICES[service]["build"]["dockerfile"].removeprefix("deploy/")
    image_env = {k: v for k, v in read_dockerfile(dockerfile)[-1].env().items() if k != "PATH"}
    return {"PATH": path, "HOME": "/nonexistent", **image_env, **service_environment(SERVICES[service], dotenv)}


@pytest.fixture
def host_bin(tmp_path: Path) -> str:
    """A PATH like the images': the venv's bin (captionbot) and captionbot-healthcheck (deploy/healthcheck.py)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "captionbot-healthcheck").symlink_to(DEPLOY / "healthcheck.py")
    return f"{bin_dir}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    s = StandIn()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def compose_up(make_redis_server: Callable[..., object], standin: StandIn, host_bin: str, tmp_path: Path,
               request: pytest.FixtureRequest) -> Iterator[Callable[[str, str], ServiceProcess]]:
    """Starts a compose service (bot, worker) as a process: ``up("worker", "worker-1")``."""
    redis = make_redis_server(appendonly=True)  # compose's Redis runs with AOF
    dotenv = {**read_env_file(DEPLOY / ".env.example").active,
              "DISCORD_TOKEN": "unused-the-stand-in-replaces-discord", "REDIS_PASSWORD": "unused-private-redis"}
    workdir = tmp_path / "app"
    workdir.mkdir()
    started: list[ServiceProcess] = []

    def up(service: str, name: str) -> ServiceProcess:
        env = container_env(service, dotenv, host_bin)
        env["CAPTIONBOT_REDIS_URL"] = redis.url  # type: ignore[attr-defined]
        env["CAPTIONBOT_METRICS_PORT"] = str(free_port())
        if env.get("CAPTIONBOT_BUNDLE") == IMAGE_BUNDLE:
            env["CAPTIONBOT_BUNDLE"] = str(request.getfixturevalue("caption_bundle"))  # the mount / baked-in copy
        argv = list(SERVICES[service]["command"])
        if service == "bot":
            env.pop("DISCORD_TOKEN")
            argv += ["--standin", standin.base_url]
        p = ServiceProcess(service, argv, env, tmp_path / f"{name}.log")
        p.start(workdir)
        started.append(p)
        return p

    yield up
    for p in started:
        if p.proc is not None and p.proc.returncode is None:
            p.stop(signal.SIGKILL)


async def healthy(p: ServiceProcess, path: str = "/readyz", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while p.healthcheck(path) != 0:
        assert p.proc is not None and p.proc.poll() is None, f"{p.name} exited\n{p.log_tail()}"
        assert time.monotonic() < deadline, f"{p.name} never answered {path}\n{p.log_tail()}"
        await asyncio.sleep(0.3)


async def one_description_each(standin: StandIn, posted: list[Message], procs: list[ServiceProcess],
                               timeout: float = 40) -> None:
    """Every message gets a reply; then, after a moment for strays, exactly one, and it is a description."""
    try:
        await standin.wait_for(lambda _: all(standin.replies_to(m) for m in posted), timeout)
    except TimeoutError as exc:
        raise AssertionError("\n".join([str(exc), *(p.log_tail() for p in procs)])) from None
    await asyncio.sleep(0.5)
    for m in posted:
        [reply] = standin.replies_to(m)
        assert reply.content not in USER_MESSAGES.values(), f"an error instead of a description: {reply.content}"
        assert reply.content.startswith("Image description:"), reply.content


async def test_compose_services_caption_photos_and_one_worker_finishes_when_the_other_stops(
        compose_up: Callable[[str, str], ServiceProcess], standin: StandIn, data_dir: Path) -> None:
    paths = sorted((data_dir / "flickr8k" / "images").glob("*.jpg"))[:1 + PHOTOS_IN_BURST + PHOTOS_AFTER_STOP]
    photos = [FileToPost(p.name, p.read_bytes(), "image/jpeg") for p in paths]
    worker_1, worker_2 = compose_up("worker", "worker-1"), compose_up("worker", "worker-2")
    bot = compose_up("bot", "bot")
    everyone = [bot, worker_1, worker_2]
    for worker in (worker_1, worker_2):
        await healthy(worker)
        assert worker.healthcheck() == 0, "compose's own healthcheck passes"
    try:
        await asyncio.wait_for(standin.gateway.ready.wait(), 60)
    except TimeoutError:
        raise AssertionError("the bot never connected to the stand-in\n" + bot.log_tail()) from None
    await healthy(bot, "/readyz", timeout=15)  # connected: ready, as the Kubernetes readiness probe asks
    assert bot.healthcheck() == 0, "compose's (and the image's) healthcheck for the bot"

    # A moderator switches alt text on in #alt-text; alice posts a photo there and gets its description.
    switched = await standin.slash("general", "mod", "alttext on", channel=standin.world.channel("alt-text"))
    await standin.wait_for(lambda _: bool(standin.answers_to(switched.id)), 30)
    assert "**on**" in standin.answers_to(switched.id)[-1].content
    first = await standin.post_message("alt-text", "alice", files=[photos[0]])
    await one_description_each(standin, [first], everyone)

    # A burst of photos; meanwhile worker-1 is stopped (`docker compose stop`) and shuts down cleanly.
    burst = [await standin.post_message("alt-text", "alice", files=[p]) for p in photos[1:1 + PHOTOS_IN_BURST]]
    await standin.wait_for(lambda _: any(standin.replies_to(m) for m in burst), 30)  # the burst is being served
    assert await asyncio.to_thread(worker_1.stop) == 0, "SIGTERM: finish the batch, acknowledge, exit 0\n" + \
        worker_1.log_tail()
    await one_description_each(standin, [first, *burst], [bot, worker_2])

    # With worker-1 gone, worker-2 answers everything that comes next.
    before = worker_2.metric("captionbot_jobs_total", '{outcome="ok"}')
    after_stop = [await standin.post_message("alt-text", "bob", files=[p]) for p in photos[1 + PHOTOS_IN_BURST:]]
    await one_description_each(standin, [first, *burst, *after_stop], [bot, worker_2])
    assert worker_2.metric("captionbot_jobs_total", '{outcome="ok"}') - before == len(after_stop)

    assert await asyncio.to_thread(bot.stop) == 0, bot.log_tail()
    assert await asyncio.to_thread(worker_2.stop) == 0, worker_2.log_tail()

