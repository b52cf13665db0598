"""Latency under steady load: post -> reply p50 / p99 at a sustained rate, through the real discord.py client, a real
Redis and a real worker with the shipped model, against the local Discord stand-in.

Processes, as deployed: ``redis-server``; ``captionbot worker`` (models/default, ``--threads``); ``captionbot bot
--standin URL`` (discord.py); and this script, which runs the stand-in and posts one Flickr8k photo at a time into
#alt-text (automatic alt text on) at ``--rate`` photos per second for ``--seconds``, open loop: each post goes out
on its schedule whether or not earlier ones were answered, so a machine that cannot keep up shows a growing
backlog instead of a slower rate. Latency is from the post (the stand-in dispatches MESSAGE_CREATE) to the bot's
reply arriving at the stand-in's REST API.

What dominates: the worker's Prometheus metrics split each job's time into queue wait + model (enqueue -> result
published) and the model time per batch; the rest of post -> reply is the bot's (gateway event, CDN download,
header probe, enqueue, result delivery, reply POST). CPU seconds per photo of each process come from /proc.

    MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824 \\
    .venv/bin/python bench/steady_latency.py --rate 20 --seconds 60 [--threads 2] [--processes 2] [--variant int8]

Prints the figures and writes them to bench/results/steady_latency.json (``--out``). A rate is "sustained" when
every photo was described, the replies kept pace with the posts (answered within the run + 10 s), and the last
third's median latency is within 1.5x the first third's. Latencies count described photos only (a "took too long"
reply is counted apart). Needs redis-server and the Flickr8k photos.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from captionbot.bot.channel_settings import SettingsStore  # noqa: E402
from captionbot.bot.standin import StandIn  # noqa: E402
from captionbot.bot.standin.record import Sent  # noqa: E402
from captionbot.bot.standin.server import FileToPost  # noqa: E402
from queue_overhead import free_port, start_redis  # noqa: E402

from captionbot.queue.connection import connect_redis  # noqa: E402
from captionbot.settings import load_settings  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def dev_photos(n: int) -> list[FileToPost]:
    root = Path(os.environ.get("CAPTIONBOT_DATA", REPO_ROOT.parent / "shared" / "data")) / "flickr8k"
    names = sorted((root / "Flickr_8k.devImages.txt").read_text().split())[:n]
    if len(names) < n:
        sys.exit(f"need {n} Flickr8k dev photos under {root}")
    return [FileToPost(name, (root / "images" / name).read_bytes(), "image/jpeg") for name in names]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children so far (Linux /proc): a worker run with
    ``--processes`` does its work in child processes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / CLK_TCK
    children = {int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()}
    return own + sum(cpu_seconds(c) for c in children if Path(f"/proc/{c}").exists())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def scrape(port: int) -> dict[str, float]:
    """The worker's metric samples (name{labels} -> value) from its /metrics."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.fullmatch(r"(captionbot_\w+(?:\{[^}]*\})?) ([0-9.e+-]+|\+Inf|NaN)", line)
        if m:
            out[m[1]] = float(m[2])
    return out


def histogram_delta(before: dict[str, float], after: dict[str, float], name: str) -> dict[str, Any]:
    """Count, mean and bucket quantiles (upper bounds) of a histogram between two scrapes."""
    count = after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0)
    total = after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)
    buckets = sorted(
        (float(m[1]) if m[1] != "+Inf" else float("inf"), after[k] - before.get(k, 0))
        for k in after if (m := re.fullmatch(rf'{name}_bucket\{{le="([^"]+)"\}}', k)))
    def quantile(q: float) -> float | None:
        return next((le for le, n in buckets if n >= q * count), None) if count else None
    return {"count": int(count), "mean": round(total / count, 4) if count else None,
            "p50_le": quantile(0.5), "p99_le": quantile(0.99)}


async def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{proc.args} not ready on {path} after {timeout} s")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    photos = dev_photos(args.photos)
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc, url = start_redis(Path(tmp))
        big = "1000000"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAPTIONBOT_") and "DISCORD_TOKEN" not in k}
        env.update(CAPTIONBOT_REDIS_URL=url, CAPTIONBOT_LOG_LEVEL="WARNING", CAPTIONBOT_ALT_TEXT_USER_LIMIT=big,
                   CAPTIONBOT_ALT_TEXT_CHANNEL_LIMIT=big, CAPTIONBOT_ALT_TEXT_GUILD_LIMIT=big)
        standin = StandIn()
        await standin.start()
        worker_port, bot_port = free_port(), free_port()
        worker = subprocess.Popen(
            [sys.executable, "-m", "captionbot.cli", "worker", "--threads", str(args.threads),
             "--variant", args.variant, "--processes", str(args.processes)],
            cwd=REPO_ROOT, env={**env, "CAPTIONBOT_METRICS_PORT": str(worker_port),
                                "CAPTIONBOT_BATCH_WAIT_MS": str(args.batch_wait_ms)})
        bot = subprocess.Popen([sys.executable, "-m", "captionbot.cli", "bot", "--standin", standin.base_url],
                               cwd=REPO_ROOT, env={**env, "CAPTIONBOT_METRICS_PORT": str(bot_port)})
        replied: dict[str, float] = {}
        refused: set[str] = set()  # replies that are not a description ("took too long", "busy")
        original = standin.rest.on_sent

        async def on_sent(sent: Sent) -> None:
            if sent.ok and sent.kind == "message" and sent.reply_to:
                replied[sent.reply_to] = time.monotonic()
                if not sent.content.startswith("Image description"):
                    refused.add(sent.reply_to)
            await original(sent)

        standin.rest.on_sent = on_sent
        try:
            await asyncio.gather(wait_http(worker_port, "/readyz", worker), wait_http(bot_port, "/readyz", bot))
            settings = load_settings(redis_url=url)
            redis = await connect_redis(settings)
            channel = standin.world.channel("alt-text")
            await SettingsStore(redis, settings.redis_keys).set_channel(int(standin.world.guild_id),
                                                                       int(channel.id), enabled=True)
            await redis.aclose()
            for p in photos[:5]:  # warm-up, one at a time
                m = await standin.post_message(channel, "alice", files=[p])
                await standin.wait_for(lambda _, m=m: m.id in replied, 120)
            before = await scrape(worker_port)
            cpu0 = {"bot": cpu_seconds(bot.pid), "worker": cpu_seconds(worker.pid),
                    "stand-in + load": cpu_seconds(os.getpid())}
            n = int(args.rate * args.seconds)
            posted: list[tuple[str, float]] = []
            start = time.monotonic()
            for i in range(n):
                delay = start + i / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                t = time.monotonic()
                m = await standin.post_message(channel, "alice", files=[photos[i % len(photos)]])
                posted.append((m.id, t))
            post_end = time.monotonic()
            with contextlib.suppress(TimeoutError):  # unanswered photos are counted below
                await standin.wait_for(lambda _: all(mid in replied for mid, _t in posted), args.drain_s)
            end = time.monotonic()
            after = await scrape(worker_port)
            cpu = {k: cpu_seconds(pid) - cpu0[k]
                   for k, pid in (("bot", bot.pid), ("worker", worker.pid), ("stand-in + load", os.getpid()))}
        finally:
            for proc in (bot, worker):
                proc.terminate()
            for proc in (bot, worker):
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            await standin.stop()
            redis_proc.terminate()
            redis_proc.wait(10)
    latencies = [(replied[mid] - t) * 1000 for mid, t in posted if mid in replied and mid not in refused]
    answered = len(latencies)
    not_described = sum(1 for mid, _ in posted if mid in refused)
    thirds = [latencies[i * answered // 3:(i + 1) * answered // 3] for i in range(3)] if answered >= 3 else []
    last_reply = max((replied[mid] for mid, _ in posted if mid in replied), default=end)
    job = histogram_delta(before, after, "captionbot_job_latency_seconds")
    batch = histogram_delta(before, after, "captionbot_batch_inference_seconds")
    batch_size = histogram_delta(before, after, "captionbot_batch_size")
    sustained = (answered == n and last_reply - start <= args.seconds + 10
                 and bool(thirds) and statistics.median(thirds[2]) <= 1.5 * statistics.median(thirds[0]))
    figures: dict[str, Any] = {
        "offered_rate": args.rate, "seconds": args.seconds, "posted": n, "described": answered,
        "answered_without_description": not_described, "unanswered": n - answered - not_described,
        "posting_took_s": round(post_end - start, 2), "reply_rate": round(answered / (last_reply - start), 2)
        if answered else 0.0, "sustained": sustained,
        "latency_ms": {"p50": round(percentile(latencies, 0.5)), "p90": round(percentile(latencies, 0.9)),
                       "p99": round(percentile(latencies, 0.99)), "max": round(max(latencies))} if latencies else None,
        "p50_by_third_ms": [round(statistics.median(t)) for t in thirds],
        "worker_job_latency_s (enqueue -> result)": job,
        "worker_batch_model_s": batch, "worker_batch_size": batch_size,
        "cpu_s_per_photo": {k: round(v / max(answered, 1), 4) for k, v in cpu.items()},
        "threads": args.threads, "processes": args.processes, "variant": args.variant,
        "batch_wait_ms": args.batch_wait_ms,
        "load_average_at_end": os.getloadavg(), "cpus": os.cpu_count(),
    }
    if sustained and job["mean"] is not None:  # overloaded, the worker also times jobs the bot gave up on
        mean_total = statistics.mean(latencies) / 1000
        figures["mean_split_s"] = {"post -> reply": round(mean_total, 4),
                                   "worker: queue wait + model": job["mean"],
                                   "of which model per batch": batch["mean"],
                                   "bot + gateway + CDN + reply": round(mean_total - job["mean"], 4)}
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=20.0, help="photos per second, posted open loop (default 20)")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long to post (default 60)")
    ap.add_argument("--threads", type=int, default=2, help="worker onnxruntime threads (default 2)")
    ap.add_argument("--variant", default="int8", help="bundle variant the worker serves (default int8)")
    ap.add_argument("--processes", type=int, default=1, help="worker processes sharing the threads (default 1)")
    ap.add_argument("--batch-wait-ms", type=int, default=10, help="CAPTIONBOT_BATCH_WAIT_MS (default 10, the worker's)")
    ap.add_argument("--photos", type=int, default=100, help="distinct dev photos, cycled (default 100)")
    ap.add_argument("--drain-s", type=float, default=60.0, help="wait this long after posting for late replies")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "steady_latency.json")
    args = ap.parse_args()
    figures = asyncio.run(run(args))
    figures["command"] = "bench/steady_latency.py " + " ".join(sys.argv[1:])
    print(json.dumps(figures, indent=1))
    args.out.parent.mkdir(exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.is_file() else []
    results = results if isinstance(results, list) else [results]
    args.out.write_text(json.dumps([*results, figures], indent=1) + "\n")


if __name__ == "__main__":
    main()
