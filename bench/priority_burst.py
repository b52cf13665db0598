"""Does a person asking `/caption` wait behind automatic alt text? 60 photos are posted at once in a channel with
automatic alt text, then (once the first of them is answered, so the backlog sits in the queue) someone runs
`/caption`. Measured twice in one run, with the same worker: with the high-priority lane (the default) and without
it (``CAPTIONBOT_PRIORITY_LANE=false``: every job in the one stream, as before the lane).

Real parts: the bot (discord.py) against the local Discord stand-in, a private redis-server, and one
``captionbot worker`` process serving the real model (models/default, onnxruntime on CPU).

    .venv/bin/python bench/priority_burst.py                    # real model, 60 photos
    .venv/bin/python bench/priority_burst.py --model null --null-delay-ms 150   # plumbing only, a fixed batch time

Prints, per arm, the `/caption` latency (slash command sent -> its answer posted) during the burst and on an idle
queue just before it, the burst's per-photo latency
p50 / p99 (photo posted -> its description posted) and how many photos were still waiting when `/caption` was asked,
and the ratio of the two `/caption` latencies. Writes bench/results/priority_burst.json. The automatic alt-text
budgets are raised for the run so that all 60 photos reach the queue (the default server budget is 60 a minute).
Needs redis-server and the Flickr8k photos (../shared/data or $CAPTIONBOT_DATA).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from captionbot.bot.channel_settings import SettingsStore  # noqa: E402
from captionbot.bot.config import BotConfig  # noqa: E402
from captionbot.bot.runner import CaptionBot  # noqa: E402
from captionbot.bot.standin import StandIn, point_discord_at  # noqa: E402
from captionbot.bot.standin.server import FileToPost  # noqa: E402
from queue_overhead import start_redis, start_worker, wait_for_worker  # noqa: E402  (bench/ is on sys.path)

from captionbot.queue.client import CaptionClient  # noqa: E402
from captionbot.queue.connection import connect_redis  # noqa: E402
from captionbot.settings import Settings, load_settings  # noqa: E402

BIG = 10**6


def photos(n: int) -> list[FileToPost]:
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO_ROOT.parent / "shared" / "data"))
    paths = sorted((data / "flickr8k" / "images").glob("*.jpg"))[:n]
    if len(paths) < n:
        sys.exit(f"need {n} photos under {data}/flickr8k/images")
    return [FileToPost(p.name, p.read_bytes(), "image/jpeg") for p in paths]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def one_arm(settings: Settings, pics: list[FileToPost], asked: FileToPost) -> dict[str, Any]:
    """Bot and stand-in for one arm (the worker is shared): a warm-up, then the burst and the `/caption`."""
    standin = StandIn()
    await standin.start()
    point_discord_at(standin.base_url)
    bot = CaptionBot(BotConfig(settings=settings, extra_cdn_origins=(standin.base_url,)), guild_ready_timeout=0.05)
    bot_task = asyncio.create_task(bot.start(standin.token))
    redis = await connect_redis(settings)
    try:
        await asyncio.wait_for(bot.wait_until_ready(), 60)
        channel = standin.world.channel("alt-text")
        await SettingsStore(redis, settings.redis_keys).set_channel(int(standin.world.guild_id), int(channel.id),
                                                                   enabled=True)
        warm = await standin.post_message(channel, "alice", files=[pics[0]])  # warm both paths
        await standin.wait_for(lambda _: bool(standin.replies_to(warm)), 120)
        t0 = time.monotonic()  # /caption on an idle queue: the floor
        first = await standin.slash("general", "mod", "caption", image=asked)
        await standin.wait_for(lambda _: any(s.content for s in standin.answers_to(first.id)), 120)
        idle_s = next(s for s in standin.answers_to(first.id) if s.content).at - t0

        posted_at: dict[str, float] = {}
        posted = []
        for i, p in enumerate(pics):
            posted_at[p.filename] = time.monotonic()
            posted.append(await standin.post_message(channel, ("alice", "bob")[i % 2], files=[p]))
        await standin.wait_for(lambda _: any(standin.replies_to(m) for m in posted), 300)
        waiting = sum(not standin.replies_to(m) for m in posted)
        t0 = time.monotonic()
        state = await standin.slash("general", "keeper", "caption", image=asked)  # posted none of them
        await standin.wait_for(lambda _: any(s.content for s in standin.answers_to(state.id)), 300)
        answer = next(s for s in standin.answers_to(state.id) if s.content)
        caption_s = answer.at - t0
        await standin.wait_for(lambda _: all(standin.replies_to(m) for m in posted), 600)
        burst = [standin.replies_to(m)[0].at - posted_at[p.filename] for m, p in zip(posted, pics, strict=True)]
        assert answer.content.startswith("Image description"), answer.content
        return {"caption_s": round(caption_s, 3), "idle_caption_s": round(idle_s, 3),
                "photos_waiting_when_asked": waiting,
                "burst_p50_s": round(statistics.median(burst), 3), "burst_p99_s": round(percentile(burst, 99), 3),
                "burst_last_s": round(max(burst), 3)}
    finally:
        await bot.close()
        await asyncio.gather(bot_task, return_exceptions=True)
        await redis.aclose()
        await standin.stop()


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    pics = photos(args.images + 1)
    asked, pics = pics[-1], pics[:-1]
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc, url = start_redis(Path(tmp))
        base = dict(redis_url=url, discord_token=None, stream="bench:priority", result_timeout_s=600,
                    alt_text_user_limit=BIG, alt_text_channel_limit=BIG, alt_text_guild_limit=BIG)
        settings = load_settings(**base)
        extra = (["--test-model", "null", "--test-model-delay-ms", str(args.null_delay_ms)] if args.model == "null"
                 else ["--bundle", str(REPO_ROOT / "models" / "default"), "--threads", str(args.threads)])
        worker: subprocess.Popen[bytes] = start_worker(settings, extra, {"CAPTIONBOT_METRICS_PORT": "0"})
        client = await CaptionClient.connect(settings)
        try:
            await wait_for_worker(client, timeout=300)
            arms = {}
            for arm, lane in (("with_lane", True), ("without_lane", False)):
                arms[arm] = await one_arm(load_settings(**base, priority_lane=lane), pics, asked)
                print(arm, json.dumps(arms[arm]), flush=True)
        finally:
            await client.close()
            worker.terminate()
            worker.wait(30)
            redis_proc.terminate()
            redis_proc.wait(10)
    return {
        "photos": args.images, "model": args.model, "batch_size": settings.batch_size,
        "batch_wait_ms": settings.batch_wait_ms, **arms,
        "caption_without_over_with_lane": round(arms["without_lane"]["caption_s"] / arms["with_lane"]["caption_s"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60, help="photos in the burst")
    parser.add_argument("--model", choices=("real", "null"), default="real")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads of the real worker")
    parser.add_argument("--null-delay-ms", type=float, default=150.0, help="the null model's time per batch")
    args = parser.parse_args()
    figures = asyncio.run(measure(args))
    argv = " ".join(sys.argv[1:])
    figures["command"] = f"bench/priority_burst.py {argv}".strip()
    figures["cpus"] = os.cpu_count()
    print(json.dumps(figures, indent=2))
    out = REPO_ROOT / "bench" / "results" / "priority_burst.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
