"""``/find``'s index at 100,000 descriptions: how long a search takes, BM25 summed inside Redis (ZUNIONSTORE with
idf weights in one Lua script: what the bot uses, ``bot/find_index.py``) vs the same BM25 in Python over postings
fetched from Redis.

The descriptions are real human captions (Flickr8k and COCO val2017 text-only, cycled with new message ids to
100,000), as "Image description: …", spread over 20 channels. Queries are 2-3 content words of 60 other captions.
A private redis-server on a free port; the index is built through ``FindIndex.add_args``/``add_many`` (its Lua
script). Besides wall-clock latency (which on a shared machine mostly measures the queue for a core) it reports the
CPU time Redis and the client spend per search.

    .venv/bin/python bench/find_index.py --out bench/results/find_index.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.bot.find_index import IMPACT_SCALE, FindIndex, terms  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from captionbot.formats import RedisKeys  # noqa: E402

GUILD = 123456789012345678
CHANNELS = [1000 + i for i in range(20)]


def captions(data: Path) -> list[str]:
    out = [line.split("\t", 1)[1].strip() for line in (data / "flickr8k/Flickr8k.token.txt").read_text().splitlines()
           if "\t" in line]
    coco = json.loads((data / "coco/annotations/captions_val2017_text_only.json").read_text())
    out += [a["caption"].strip() for a in coco["annotations"]]
    return out


async def python_bm25(redis: Redis, prefix: str, query: str, allowed: set[int] | None, limit: int = 5):
    """The same ranking computed in Python over whole postings fetched with ZRANGE (the alternative measured
    against summing inside Redis)."""
    wanted = list(dict.fromkeys(terms(query)))
    pipe = redis.pipeline(transaction=False)
    pipe.hget(f"{prefix}:stats", "n")
    for t in wanted:
        pipe.zrange(f"{prefix}:t:{t}", 0, -1, withscores=True)
    n_raw, *postings = await pipe.execute()
    n = int(n_raw)
    scores: dict[bytes, float] = defaultdict(float)
    for post in postings:
        if not post:
            continue
        idf = math.log(1 + (n - len(post) + 0.5) / (len(post) + 0.5))
        for doc, s in post:
            if allowed is not None and int(doc.split(b":")[1]) not in allowed:
                continue
            scores[doc] += idf * s
    best = sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)  # equal scores: newest first
    return [(doc, s / IMPACT_SCALE) for doc, s in best[:limit]]


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (user + system), from /proc: what a search costs whatever else the machine
    runs, unlike wall-clock time on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main_async(args: argparse.Namespace) -> dict:
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data"))
    pool = captions(data)
    rng = random.Random(8)
    rng.shuffle(pool)
    queries_from, pool = pool[:60], pool[60:]
    queries = []
    for cap in queries_from:
        words = [w for w in dict.fromkeys(terms(cap)) if len(w) > 2]
        queries.append(" ".join(rng.sample(words, min(len(words), rng.choice((2, 3))))))
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="find-bench-")
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "",
                               "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL)
    redis = Redis(port=port)
    try:
        for _ in range(100):
            try:
                await redis.ping()
                break
            except Exception:
                await asyncio.sleep(0.05)
        index = FindIndex(redis, RedisKeys(jobs="bench:jobs"))
        start = time.perf_counter()
        message_id = 1_100_000_000_000_000_000  # a Discord id of 2022; each description 1 ms after the last

        added = 0
        for i in range(0, args.docs, 1000):
            added += await index.add_many([
                index.add_args(GUILD, CHANNELS[(i + j) % len(CHANNELS)], message_id + ((i + j) << 22),
                               f"Image description: {pool[(i + j) % len(pool)]}")
                for j in range(min(1000, args.docs - i))])
        build_s = time.perf_counter() - start
        info = await redis.info("memory")
        assert await index.size(GUILD) == added, (added, await index.size(GUILD))
        prefix = index.prefix(GUILD)
        some = set(CHANNELS[:15])
        results: dict = {"docs": added, "build_s": round(build_s, 1),
                         "redis_used_memory_mb": round(info["used_memory"] / 2**20, 1), "queries": len(queries)}
        for name, run in (
            ("lua_all_channels", lambda q: index.search(GUILD, q, None)),
            ("lua_15_of_20_channels", lambda q: index.search(GUILD, q, some)),
            ("python_all_channels", lambda q: python_bm25(redis, prefix, q, None)),
            ("python_15_of_20_channels", lambda q: python_bm25(redis, prefix, q, some)),
        ):
            for q in queries[:5]:
                await run(q)  # warm up (script cache, connection)
            times = []
            redis_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
            for _ in range(args.rounds):
                for q in queries:
                    t0 = time.perf_counter()
                    await run(q)
                    times.append((time.perf_counter() - t0) * 1000)
            redis_cpu, client_cpu = cpu_seconds(server.pid) - redis_cpu, time.process_time() - client_cpu
            times.sort()
            results[name] = {"p50_ms": round(statistics.median(times), 2),
                             "p95_ms": round(times[int(0.95 * len(times)) - 1], 2), "max_ms": round(times[-1], 2),
                             "redis_cpu_ms_per_query": round(1000 * redis_cpu / len(times), 2),
                             "client_cpu_ms_per_query": round(1000 * client_cpu / len(times), 2)}
            print(name, results[name], flush=True)
        # the two must rank alike: same documents, same order
        same = 0
        for q in queries:
            lua = [(f.channel_id, f.message_id) for f in await index.search(GUILD, q, None)]
            py = [tuple(int(x) for x in reversed(d.split(b":"))) for d, _ in await python_bm25(redis, prefix, q, None)]
            same += lua == py
        results["lua_and_python_agree"] = f"{same}/{len(queries)}"
        results["example"] = {"query": queries[0], "top": [f.text for f in await index.search(GUILD, queries[0],
                                                                                                   None)]}
        with open("/proc/loadavg") as fh:
            results["load_average_during_run"] = fh.read().split()[:3]
        return results
    finally:
        await redis.aclose()
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    results = asyncio.run(main_async(args))
    results["command"] = "bench/find_index.py " + " ".join(sys.argv[1:])
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
