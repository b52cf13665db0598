"""The Redis that docker-compose.yml declares, run here with its own command: password required, AOF keeps jobs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
from deploy_files import free_port, interpolate, load_compose
from redis.backoff import NoBackoff
from redis.retry import Retry

PASSWORD = "s3cret-0123456789abcdef"


def start_compose_redis(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """Compose's Redis command, with only its data directory and port changed for this machine."""
    command = [interpolate(part, {}) for part in load_compose()["services"]["redis"]["command"]]
    assert command[:2] == ["sh", "-c"] and "--dir /data" in command[2]
    command[2] = command[2].replace("--dir /data", f"--dir {data_dir}") + f" --port {port} --bind 127.0.0.1"
    proc = subprocess.Popen(command, env={**os.environ, "REDIS_PASSWORD": PASSWORD},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port, password=PASSWORD, socket_timeout=1).ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("compose's redis command did not start")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_compose_redis_refuses_strangers_and_keeps_waiting_jobs_across_a_restart(tmp_path: Path) -> None:
    port = free_port()
    proc = start_compose_redis(tmp_path, port)
    try:
        with pytest.raises(redis.AuthenticationError):  # no retries: a refusal is final
            redis.Redis(port=port, socket_timeout=1, retry=Retry(NoBackoff(), 0)).ping()
        r = redis.Redis(port=port, password=PASSWORD, socket_timeout=1)
        assert r.config_get("appendonly") == {"appendonly": "yes"}
        assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        r.xadd("captionbot:jobs", {"job_id": "waiting-job"})
        assert PASSWORD not in " ".join(Path(f"/proc/{proc.pid}/cmdline").read_text().split("\0"))
        proc.send_signal(signal.SIGTERM)  # `docker compose restart redis`
        assert proc.wait(timeout=10) == 0
        proc = start_compose_redis(tmp_path, port)
        r = redis.Redis(port=port, password=PASSWORD, socket_timeout=1)
        assert [fields[b"job_id"] for _, fields in r.xrange("captionbot:jobs")] == [b"waiting-job"]
    finally:
        proc.kill()
        proc.wait()
