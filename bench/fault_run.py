"""Fault run: N jobs through real worker processes while workers are SIGKILLed, Redis is killed and restarted (AOF
on), Redis is frozen (SIGSTOP, then SIGCONT) and a few images kill the worker that runs them (issue 17).

    .venv/bin/python bench/fault_run.py [--jobs 600] [--rate 30] [--workers 3] [--crash-images 5]
                                        [--commands-every 5] [--out run.json]

A private redis-server (``appendonly yes``, ``appendfsync always``) and ``captionbot worker --test-model crash``
processes (the null model, which answers a caption derived from the image bytes, and kills its own process with
SIGKILL on an image holding ``CRASH_MARK``), restarted by a supervisor loop when they die, as systemd or
Kubernetes would. One bot-side ``CaptionClient`` sends the jobs at a steady rate, each waiting up to
``--timeout`` s. The faults, while jobs flow: SIGKILL of a worker holding jobs, Redis SIGKILL + restart on the same
port, Redis SIGSTOP for ``--freeze`` s, another worker SIGKILL.

Prints (and writes with ``--out``): sent, delivered (answered once: a caption, or a dead letter for a crash image),
lost (no answer: TIMEOUT, BUSY, INTERNAL), duplicated (a second answer for a job), healthy jobs dead-lettered,
wrong captions, crash images dead-lettered, worker deaths, and per fault the time to recover: for a worker kill,
until every job it held is answered; for Redis, from Redis answering again until the first answer, and until every
job in flight at the fault is answered. Exits 1 unless lost, duplicated, healthy dead-lettered and wrong are all 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from captionbot.inference.null_captioner import CRASH_MARK, null_caption  # noqa: E402

from captionbot.formats import CaptionResult, ErrorCode, Priority  # noqa: E402
from captionbot.queue.client import CaptionClient  # noqa: E402
from captionbot.queue.dead_letter import read_dead_letters  # noqa: E402
from captionbot.settings import Settings, load_settings  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Redis:
    """A redis-server of our own with AOF on, restartable on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):  # answers only once the AOF is loaded
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Workers:
    """Worker processes under a supervisor that restarts any that dies."""

    settings: Settings
    count: int
    delay_ms: float
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: int = 0
    deaths: int = 0  # by any cause: a crash image or our SIGKILL
    stopping: bool = False

    def spawn(self) -> None:
        self.started += 1
        name = f"w{self.started}"
        env = dict(os.environ, CAPTIONBOT_REDIS_URL=self.settings.redis_url.get_secret_value() if
                   self.settings.redis_url else "", CAPTIONBOT_STREAM=self.settings.stream,
                   CAPTIONBOT_BATCH_SIZE=str(self.settings.batch_size),
                   CAPTIONBOT_BATCH_WAIT_MS=str(self.settings.batch_wait_ms),
                   CAPTIONBOT_MAX_ATTEMPTS=str(self.settings.max_attempts), CAPTIONBOT_METRICS_PORT="0")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "captionbot.cli", "--log-level", "ERROR", "worker", "--name", name,
             "--test-model", "crash", "--test-model-delay-ms", str(self.delay_ms)],
            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def supervise(self) -> None:
        while not self.stopping:
            for name, proc in list(self.procs.items()):
                if proc.poll() is not None:
                    del self.procs[name]
                    self.deaths += 1
                    self.spawn()
            while len(self.procs) < self.count:
                self.spawn()
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        self.stopping = True
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass
class Job:
    n: int
    image: bytes
    crash: bool
    sent_at: float = 0.0
    answered_at: float | None = None
    result: CaptionResult | None = None


async def held_by(client: CaptionClient, settings: Settings, consumer: str) -> set[str]:
    """Job ids pending on ``consumer`` (delivered to it, not answered)."""
    pending = await client.redis.xpending_range(settings.stream, settings.group, "-", "+", 1000, consumer)
    ids = set()
    for p in pending:
        for _, fields in await client.redis.xrange(settings.stream, p["message_id"], p["message_id"]):
            ids.add(fields[b"job_id"].decode())
    return ids


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="fault-run-"))
    redis = Redis(workdir)
    redis.start()
    settings = load_settings(redis_url=redis.url, stream="fault:jobs", batch_size=8, batch_wait_ms=50,
                             max_attempts=3, result_timeout_s=args.timeout, queue_maxlen=2000, metrics_port=0)
    workers = Workers(settings, args.workers, args.delay_ms)
    supervisor = asyncio.create_task(workers.supervise())
    client = await CaptionClient.connect(settings, instance_id="fault-run")
    t0 = time.monotonic()
    spacing = args.jobs / max(1, args.crash_images)
    crash_at = {round((k + 0.5) * spacing) for k in range(args.crash_images)}
    jobs = [Job(n, b"\x89PNG\r\n\x1a\n" + f"job {n} ".encode() * 8 + (CRASH_MARK if n in crash_at else b""),
                n in crash_at) for n in range(args.jobs)]
    faults: list[dict[str, Any]] = []

    async def ask(job: Job) -> None:
        job.sent_at = time.monotonic()
        # every --commands-every'th job goes to the command lane, as a person's /caption would (crash images too)
        high = args.commands_every > 0 and job.n % args.commands_every == 0
        job.result = await client.caption(job.image, timeout=args.timeout,
                                          priority=Priority.HIGH if high else Priority.LOW)
        job.answered_at = time.monotonic()

    async def send_all() -> None:
        tasks = []
        for job in jobs:
            tasks.append(asyncio.create_task(ask(job)))
            await asyncio.sleep(1 / args.rate)
        await asyncio.gather(*tasks)

    def in_flight(at: float) -> list[Job]:
        return [j for j in jobs if j.sent_at and j.sent_at <= at and (j.answered_at is None or j.answered_at > at)]

    async def kill_a_busy_worker(label: str) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for name, proc in list(workers.procs.items()):
                if await held_by(client, settings, name) and proc.poll() is None:
                    at = time.monotonic()
                    proc.kill()
                    await asyncio.to_thread(proc.wait)
                    held = await held_by(client, settings, name)  # read again: what it held when it died
                    faults.append({"fault": label, "worker": name, "at_s": at - t0, "held": held, "t": at})
                    return
            await asyncio.sleep(0.05)
        faults.append({"fault": label, "worker": None, "at_s": time.monotonic() - t0, "held": set(),
                       "t": time.monotonic()})

    async def faults_schedule() -> None:
        window = args.jobs / args.rate
        await asyncio.sleep(0.15 * window)
        await kill_a_busy_worker("worker SIGKILL")
        await asyncio.sleep(0.15 * window)
        at = time.monotonic()
        redis.kill()  # SIGKILL: only what the AOF holds survives
        await asyncio.sleep(1.0)
        await asyncio.to_thread(redis.start)
        faults.append({"fault": "Redis SIGKILL + restart (AOF)", "at_s": at - t0, "t": at,
                       "back": time.monotonic(), "in_flight": in_flight(at)})
        await asyncio.sleep(0.2 * window)
        at = time.monotonic()
        redis.signal(signal.SIGSTOP)
        await asyncio.sleep(args.freeze)
        redis.signal(signal.SIGCONT)
        faults.append({"fault": f"Redis SIGSTOP {args.freeze:g} s", "at_s": at - t0, "t": at,
                       "back": time.monotonic(), "in_flight": in_flight(at)})
        await asyncio.sleep(0.15 * window)
        await kill_a_busy_worker("worker SIGKILL")

    try:
        await asyncio.gather(send_all(), faults_schedule())
        elapsed = time.monotonic() - t0
        dead = await read_dead_letters(client.redis, settings, count=10_000)
    finally:
        workers.stop()
        supervisor.cancel()
        await client.close()
        redis.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    by_id = {j.result.job_id: j for j in jobs if j.result}
    answered = {j.result.job_id: j.answered_at for j in jobs if j.result and j.answered_at}
    lost = [j for j in jobs if j.result is None or j.result.error in (ErrorCode.TIMEOUT, ErrorCode.BUSY,
                                                                      ErrorCode.INTERNAL)]
    healthy_dead = [j for j in jobs if not j.crash and j.result and j.result.error is ErrorCode.DEAD_LETTER]
    wrong = [j for j in jobs if not j.crash and j.result and j.result.ok and j.result.caption != null_caption(j.image)]
    crash_dead = [j for j in jobs if j.crash and j.result and j.result.error is ErrorCode.DEAD_LETTER]
    healthy_dead_in_redis = [d for d in dead if d.job_id in by_id and not by_id[d.job_id].crash]
    recovered = []
    for f in faults:
        row: dict[str, Any] = {"fault": f["fault"], "at_s": round(f["at_s"], 1)}
        if "held" in f:
            times = [answered.get(jid) for jid in f["held"]]
            row["jobs_held"] = len(f["held"])
            if f["held"] and all(times):
                row["first_held_answered_after_s"] = round(min(t for t in times if t) - f["t"], 2)
                row["all_held_answered_after_s"] = round(max(t for t in times if t) - f["t"], 2)
        else:
            row["outage_s"] = round(f["back"] - f["t"], 2)
            after = [t for t in answered.values() if t >= f["back"]]
            row["first_answer_after_back_s"] = round(min(after) - f["back"], 2) if after else None
            inflight = [j.answered_at for j in f["in_flight"] if not j.crash and j.answered_at]
            row["in_flight_at_fault"] = len(f["in_flight"])
            row["all_in_flight_answered_after_back_s"] = round(max(inflight) - f["back"], 2) if inflight else None
        recovered.append(row)
    latencies = sorted((j.answered_at - j.sent_at) for j in jobs if not j.crash and j.answered_at)
    return {
        "sent": len(jobs),
        "delivered": len(jobs) - len(lost),
        "lost": len(lost),
        "duplicated": client.duplicates_dropped,
        "healthy_jobs_dead_lettered": len(healthy_dead),
        "healthy_dead_letters_in_redis": len(healthy_dead_in_redis),
        "wrong_captions": len(wrong),
        "crash_images": len(crash_at),
        "crash_images_dead_lettered": len(crash_dead),
        "worker_deaths": workers.deaths,
        "healthy_latency_s": {"median": round(statistics.median(latencies), 3),
                              "p99": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
                              "max": round(latencies[-1], 2)} if latencies else None,
        "faults": recovered,
        "elapsed_s": round(elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--rate", type=float, default=30.0, help="jobs sent per second")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--crash-images", type=int, default=5)
    parser.add_argument("--delay-ms", type=float, default=200.0, help="the null model's time per batch")
    parser.add_argument("--freeze", type=float, default=4.0, help="seconds Redis stays SIGSTOPped")
    parser.add_argument("--timeout", type=float, default=240.0, help="each caption() call's deadline")
    parser.add_argument("--commands-every", type=int, default=5,
                        help="every Nth job is sent in the command lane (0: all in the automation lane)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the client's "queue unreachable, retrying" lines are expected here
    report = asyncio.run(run(args))
    report["command"] = " ".join(["bench/fault_run.py", *sys.argv[1:]])
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    bad = report["lost"] + report["duplicated"] + report["healthy_jobs_dead_lettered"] + report["wrong_captions"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
