"""Session fixtures: a private redis-server (never the shared 6379) and the real data under ../shared/data."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server process of our own on a free port; can be stopped and restarted (AOF keeps data)."""

    def __init__(self, workdir: Path, appendonly: bool = False) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server; .ci/run does this)")
        self.exe = exe
        self.workdir = workdir
        self.appendonly = appendonly
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", str(self.workdir), "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the test session. Tests must use their own key names or flush it."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session redis-server, flushed before the test."""
    import redis

    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    r.close()
    return redis_server.url


@pytest.fixture
def make_redis_server(tmp_path: Path) -> Iterator[type[RedisServer] | object]:
    """Factory for a private, restartable redis-server (e.g. with AOF) for one test."""
    servers: list[RedisServer] = []

    def factory(appendonly: bool = True) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(servers)}", appendonly=appendonly)
        server.start()
        servers.append(server)
        return server

    yield factory
    for s in servers:
        s.stop()


def find_data_dir() -> Path | None:
    env = os.environ.get("CAPTIONBOT_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for c in candidates:
        if (c / "flickr8k" / "Flickr8k.token.txt").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real image-caption data (../shared/data or $CAPTIONBOT_DATA); skips the test when absent."""
    found = find_data_dir()
    if found is None:
        pytest.skip("real data not found: set CAPTIONBOT_DATA or put the data in ../shared/data")
    return found


@pytest.fixture(scope="session")
def caption_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model bundle directory for end-to-end tests: models/default when present and its hashes verify,
    else a tiny random-weight (but real) bundle built once per session by
    ``captionbot.export.tiny.make_tiny_bundle``."""
    from captionbot import formats
    from captionbot.settings import DEFAULT_BUNDLE

    manifest_path = DEFAULT_BUNDLE / formats.MANIFEST_FILE
    if manifest_path.is_file():
        try:
            formats.verify_bundle_files(DEFAULT_BUNDLE, formats.Manifest.from_json(manifest_path.read_text()))
            return DEFAULT_BUNDLE
        except (formats.BundleError, ValueError, KeyError, TypeError):
            pass
    from captionbot.export.tiny import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")

