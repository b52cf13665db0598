"""What the Discord side adds to a caption: the same photos captioned directly through the queue, and posted
through the local Discord stand-in (discord.py gateway event -> checks -> CDN download -> header probe -> queue ->
reply over REST), in one run, with the null model so that only the plumbing is measured.

    .venv/bin/python bench/bot_overhead.py            # 40 photos one at a time, bursts of 40
    .venv/bin/python bench/bot_overhead.py --quick    # 10 and 10

Reports the median ms per photo one at a time and the burst wall time for each path, and their ratios (same
machine, same run). Writes bench/results/bot_overhead.json. Needs redis-server and the Flickr8k photos
(../shared/data or $CAPTIONBOT_DATA).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from captionbot.bot.channel_settings import SettingsStore  # noqa: E402
from captionbot.bot.config import BotConfig  # noqa: E402
from captionbot.bot.runner import CaptionBot  # noqa: E402
from captionbot.bot.standin import StandIn, point_discord_at  # noqa: E402
from captionbot.bot.standin.server import FileToPost  # noqa: E402
from captionbot.inference.null_captioner import NullCaptioner  # noqa: E402
from queue_overhead import start_redis  # noqa: E402  (bench/ is on sys.path when run as a script)

from captionbot.queue.client import CaptionClient  # noqa: E402
from captionbot.queue.connection import connect_redis  # noqa: E402
from captionbot.queue.worker import Worker  # noqa: E402
from captionbot.settings import load_settings  # noqa: E402


def photos(n: int) -> list[FileToPost]:
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO_ROOT.parent / "shared" / "data"))
    paths = sorted((data / "flickr8k" / "images").glob("*.jpg"))[:n]
    if len(paths) < n:
        sys.exit(f"need {n} photos under {data}/flickr8k/images")
    return [FileToPost(p.name, p.read_bytes(), "image/jpeg") for p in paths]


async def measure(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc, url = start_redis(Path(tmp))
        big = 10**6
        settings = load_settings(redis_url=url, discord_token=None, batch_wait_ms=0, user_limit=big, channel_limit=big,
                                 guild_limit=big, alt_text_user_limit=big, alt_text_channel_limit=big,
                                 alt_text_guild_limit=big)
        stop = asyncio.Event()
        worker = asyncio.create_task(Worker(settings, NullCaptioner(), name="bench").serve(stop))
        standin = StandIn()
        await standin.start()
        point_discord_at(standin.base_url)
        config = BotConfig(settings=settings, extra_cdn_origins=(standin.base_url,))
        bot = CaptionBot(config, guild_ready_timeout=0.05)
        bot_task = asyncio.create_task(bot.start(standin.token))
        await asyncio.wait_for(bot.wait_until_ready(), 30)
        redis = await connect_redis(settings)
        channel = standin.world.channel("alt-text")
        await SettingsStore(redis, settings.redis_keys).set_channel(int(standin.world.guild_id), int(channel.id),
                                                               enabled=True)
        client = await CaptionClient.connect(settings, redis=redis)
        pics = photos(n)
        try:
            await client.caption(pics[0].data, beam_size=1)  # warm both paths
            await one_via_discord(standin, pics[0])

            direct_ms, discord_ms = [], []
            for p in pics:
                t0 = time.perf_counter()
                result = await client.caption(p.data, beam_size=1)
                direct_ms.append((time.perf_counter() - t0) * 1000)
                assert result.ok, result
                discord_ms.append(await one_via_discord(standin, p))

            t0 = time.perf_counter()
            results = await asyncio.gather(*(client.caption(p.data, beam_size=1) for p in pics))
            direct_burst = time.perf_counter() - t0
            assert all(r.ok for r in results)
            t0 = time.perf_counter()
            posted = [await standin.post_message(channel, "alice", files=[p]) for p in pics]
            await standin.wait_for(lambda _: all(standin.replies_to(m) for m in posted), 120)
            discord_burst = time.perf_counter() - t0
        finally:
            await client.close()
            await bot.close()
            await asyncio.gather(bot_task, return_exceptions=True)
            stop.set()
            await worker
            await standin.stop()
            redis_proc.terminate()
            redis_proc.wait(10)
    return {
        "photos": n,
        "direct_median_ms": round(statistics.median(direct_ms), 1),
        "discord_median_ms": round(statistics.median(discord_ms), 1),
        "discord_over_direct_one_at_a_time": round(statistics.median(discord_ms) / statistics.median(direct_ms), 2),
        "direct_burst_s": round(direct_burst, 3),
        "discord_burst_s": round(discord_burst, 3),
        "discord_over_direct_burst": round(discord_burst / direct_burst, 2),
    }


async def one_via_discord(standin: StandIn, photo: FileToPost) -> float:
    t0 = time.perf_counter()
    posted = await standin.post_message("alt-text", "alice", files=[photo])
    await standin.wait_for(lambda _: bool(standin.replies_to(posted)), 60)
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 photos instead of 40")
    args = parser.parse_args()
    figures = asyncio.run(measure(10 if args.quick else 40))
    figures["command"] = "bench/bot_overhead.py" + (" --quick" if args.quick else "")
    print(json.dumps(figures, indent=2))
    out = REPO_ROOT / "bench" / "results" / "bot_overhead.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
