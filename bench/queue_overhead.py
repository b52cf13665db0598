"""Queue overhead per job (null model) and the real model's images/s at batch 1 vs the batched worker, in one run.

    .venv/bin/python bench/queue_overhead.py            # full run
    .venv/bin/python bench/queue_overhead.py --quick    # a smaller, faster run

1. Overhead: one job at a time through a private redis-server and a ``captionbot worker`` process running the null
   test model (no inference), ``batch_wait_ms=0``: the round trip bot -> Redis -> worker -> Redis -> bot is what the
   queue costs a job. Also the same with the embedded in-process queue (bot and worker in one process).
2. Null-model throughput with the default batch settings and many jobs in flight: jobs/s and ms per job.
3. The real model (``models/default`` or ``--bundle``): the same images through a worker with ``batch_size=1`` and
   one with ``batch_size=16``; images/s of each and their ratio (same machine, same run).

``--processes P`` runs only this instead: the real model, served end to end through Redis (default batch settings,
64 jobs in flight) by ``captionbot worker --threads T`` in one process against ``captionbot worker --threads T
--processes P`` (``CAPTIONBOT_WORKER_PROCESSES``), both started once, each on its own stream, in interleaved rounds
(ABAB: one serves while the other waits idle on its empty stream):

    .venv/bin/python bench/queue_overhead.py --processes 2 --threads 2 --rounds 6 --images 128
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from captionbot.queue.client import CaptionClient  # noqa: E402
from captionbot.settings import DEFAULT_BUNDLE, Settings, load_settings  # noqa: E402

FAKE_PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 50_000  # ~50 kB, like a small upload; the null model only checks the magic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


def start_worker(settings: Settings, extra: list[str], env_extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = dict(os.environ, CAPTIONBOT_REDIS_URL=settings.redis_url.get_secret_value(),  # type: ignore[union-attr]
               CAPTIONBOT_STREAM=settings.stream, CAPTIONBOT_BATCH_SIZE=str(settings.batch_size),
               CAPTIONBOT_BATCH_WAIT_MS=str(settings.batch_wait_ms), **env_extra)
    return subprocess.Popen([sys.executable, "-m", "captionbot.cli", "--log-level", "WARNING", "worker", *extra],
                            cwd=REPO_ROOT, env=env)


async def wait_for_worker(client: CaptionClient, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (await client.stats())["workers"] < 1:
        if time.monotonic() > deadline:
            raise RuntimeError("worker did not start")
        await asyncio.sleep(0.1)


async def sequential_latency_ms(client: CaptionClient, n: int, image: bytes) -> list[float]:
    for _ in range(20):  # warm up connections and scripts
        await client.caption(image)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = await client.caption(image)
        out.append((time.perf_counter() - t) * 1000)
        assert r.ok, r
    return out


async def throughput(client: CaptionClient, images: list[bytes], concurrency: int) -> tuple[float, int]:
    """Images/s for captioning all ``images`` with ``concurrency`` in flight; also how many failed."""
    sem = asyncio.Semaphore(concurrency)

    async def one(img: bytes) -> bool:
        async with sem:
            return (await client.caption(img, timeout=600)).ok

    t = time.perf_counter()
    ok = await asyncio.gather(*(one(i) for i in images))
    return len(images) / (time.perf_counter() - t), ok.count(False)


def summary(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=10)
    return {"median_ms": round(statistics.median(ms), 3), "p90_ms": round(q[8], 3), "n": len(ms)}


async def bench_null_redis(url: str, n: int) -> dict[str, object]:
    settings = load_settings(redis_url=url, stream="bench:overhead", batch_wait_ms=0)
    client = await CaptionClient.connect(settings)
    worker = start_worker(settings, ["--test-model", "null"], {})
    try:
        await wait_for_worker(client)
        lat = summary(await sequential_latency_ms(client, n, FAKE_PNG))
        busy = load_settings(redis_url=url, stream="bench:overhead", batch_size=16, batch_wait_ms=50)
        worker.terminate()
        worker.wait(10)
        worker = start_worker(busy, ["--test-model", "null"], {})
        await asyncio.sleep(1.0)
        await wait_for_worker(client)
        rate, failed = await throughput(client, [FAKE_PNG] * (n * 5), concurrency=64)
    finally:
        worker.terminate()
        worker.wait(10)
        await client.close()
    return {"sequential": lat, "loaded_jobs_per_s": round(rate, 1), "loaded_ms_per_job": round(1000 / rate, 3),
            "loaded_failed": failed}


async def bench_null_embedded(n: int) -> dict[str, object]:
    from captionbot.inference.null_captioner import NullCaptioner

    from captionbot.queue.worker import Worker

    settings = load_settings(redis_url=None, stream="bench:embedded", batch_wait_ms=0)
    client = await CaptionClient.connect(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(Worker(settings, NullCaptioner(), name="embedded").serve(stop))
    try:
        lat = summary(await sequential_latency_ms(client, n, FAKE_PNG))
    finally:
        stop.set()
        await task
        await client.close()
    return {"sequential": lat}


def load_images(n: int) -> list[bytes]:
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO_ROOT.parent / "shared" / "data")) / "flickr8k"
    names = (data / "Flickr_8k.devImages.txt").read_text().split() if data.is_dir() else []
    images = [(data / "images" / name).read_bytes() for name in names[:n] if (data / "images" / name).is_file()]
    if not images:
        raise SystemExit("no images: put the data in ../shared/data or set CAPTIONBOT_DATA")
    return images


async def bench_real(url: str, bundle: Path, n: int, threads: int) -> dict[str, object]:
    images = load_images(n)
    out: dict[str, object] = {"bundle": str(bundle), "images": len(images), "threads": threads}
    for batch_size in (1, 16):
        settings = load_settings(redis_url=url, stream=f"bench:real{batch_size}", batch_size=batch_size,
                                 batch_wait_ms=50, result_timeout_s=600)
        client = await CaptionClient.connect(settings)
        worker = start_worker(settings, ["--bundle", str(bundle), "--threads", str(threads)], {})
        try:
            await wait_for_worker(client)
            await throughput(client, images[:8], concurrency=8)  # warm-up
            rate, failed = await throughput(client, images, concurrency=64)
        finally:
            worker.terminate()
            worker.wait(30)
            await client.close()
        out[f"batch{batch_size}_images_per_s"] = round(rate, 2)
        out[f"batch{batch_size}_failed"] = failed
    out["batched_over_batch1"] = round(out["batch16_images_per_s"] / out["batch1_images_per_s"], 2)  # type: ignore[operator]
    return out


async def bench_processes(url: str, bundle: Path, n: int, threads: int, processes: int, rounds: int
                          ) -> dict[str, object]:
    """1 process of ``threads`` threads vs ``processes`` processes sharing them, ABAB, through Redis."""
    images = load_images(n)
    configs = {"1 process": [], f"{processes} processes": ["--processes", str(processes)]}
    clients: dict[str, CaptionClient] = {}
    workers: list[subprocess.Popen[bytes]] = []
    seconds = dict.fromkeys(configs, 0.0)
    try:
        for name, extra in configs.items():
            settings = load_settings(redis_url=url, stream=f"bench:procs{len(clients)}", result_timeout_s=600)
            clients[name] = await CaptionClient.connect(settings)
            workers.append(start_worker(settings, ["--bundle", str(bundle), "--threads", str(threads), *extra], {}))
        for name, client in clients.items():
            await wait_for_worker(client)
            await asyncio.sleep(5 if "processes" in name else 0)  # every process started, not just the first
            await throughput(client, images[:32], concurrency=64)  # warm-up
        for r in range(rounds):
            for name, client in clients.items():
                t = time.perf_counter()
                _, failed = await throughput(client, images, concurrency=64)
                seconds[name] += time.perf_counter() - t
                assert not failed, f"{failed} jobs failed"
            print(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {len(images) * (r + 1) / v:.1f} images/s"
                                                      for k, v in seconds.items()), file=sys.stderr, flush=True)
        workers_seen = {r.worker for r in await asyncio.gather(*(clients[f"{processes} processes"].caption(i)
                                                                   for i in images[:32]))}
    finally:
        for w in workers:
            w.terminate()
            w.wait(60)
        for c in clients.values():
            await c.close()
    rates = {k: round(len(images) * rounds / v, 2) for k, v in seconds.items()}
    return {"bundle": str(bundle), "images": len(images), "rounds": rounds, "threads": threads,
            "images_per_s": rates, "processes_over_one": round(rates[f"{processes} processes"] / rates["1 process"], 3),
            "consumers_seen": sorted(workers_seen), "load_at_end": os.getloadavg()[0]}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs and images")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="model bundle for part 3")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads for part 3 (0: default)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--processes", type=int, default=0, help="only: 1 worker process vs this many, real model")
    parser.add_argument("--rounds", type=int, default=6, help="with --processes: interleaved rounds")
    parser.add_argument("--images", type=int, default=128, help="with --processes: images per round")
    args = parser.parse_args()
    n = 200 if args.quick else 2000
    report: dict[str, object] = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc, url = start_redis(Path(tmp))
        try:
            if args.processes:
                report["processes"] = await bench_processes(url, args.bundle, args.images, args.threads or 2,
                                                            args.processes, args.rounds)
            else:
                report["null_model_redis"] = await bench_null_redis(url, n)
                report["null_model_embedded"] = await bench_null_embedded(n)
                if (args.bundle / "manifest.json").is_file():
                    report["real_model"] = await bench_real(url, args.bundle, 64 if args.quick else 256, args.threads)
                else:
                    report["real_model"] = f"skipped: no bundle at {args.bundle} (pass --bundle)"
        finally:
            redis_proc.terminate()
            redis_proc.wait(10)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    asyncio.run(main())
