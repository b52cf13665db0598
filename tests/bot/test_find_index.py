"""The /find index on a real Redis: its search returns BM25's exact top hits (checked against BM25 computed here
from the formula), only from the channels given, newest first among equals; deletes, wipes
and several bot processes sharing one Redis."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import pytest
from captionbot.bot.find_index import IMPACT_SCALE, FindIndex, terms, weight
from redis.asyncio import Redis

from captionbot.formats import RedisKeys

KEYS = RedisKeys(jobs="test:find:jobs")
GUILD, OTHER_GUILD = 111, 222
BASE_ID = 1_100_000_000_000_000_000


def corpus(data_dir: Path, n: int) -> list[str]:
    lines = (data_dir / "flickr8k" / "Flickr8k.token.txt").read_text().splitlines()
    return [f"Image description: {line.split(chr(9), 1)[1]}" for line in lines[:n]]


def bm25_top(docs: dict[tuple[int, int], str], query: str, channels: set[int] | None, k: int = 5):
    """BM25 from the formula, over every document: what the index must return."""
    tf = {d: Counter(terms(text)) for d, text in docs.items()}
    n = len(docs)
    wanted = list(dict.fromkeys(terms(query)))
    df = {t: sum(t in c for c in tf.values()) for t in wanted}
    scores = {}
    for d, counts in tf.items():
        if channels is not None and d[0] not in channels:
            continue
        length = sum(counts.values())
        s, hit = 0.0, False
        for t in wanted:
            if counts[t]:
                hit = True
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * round(weight(counts[t], length) * IMPACT_SCALE)
        if hit:
            scores[d] = s / IMPACT_SCALE
    return sorted(scores.items(), key=lambda kv: (-kv[1], -kv[0][1]))[:k]


async def test_search_returns_bm25s_exact_top_hits_in_the_channels_given(redis_url: str, data_dir: Path) -> None:
    redis = Redis.from_url(redis_url)
    index = FindIndex(redis, KEYS)
    rng = random.Random(3)
    texts = corpus(data_dir, 600)
    docs = {}
    for i, text in enumerate(texts):
        docs[(10 + i % 4, BASE_ID + (i << 22))] = text
    await index.add_many([index.add_args(GUILD, c, m, t) for (c, m), t in docs.items()])
    assert await index.size(GUILD) == len(docs)
    try:
        checked = 0
        for text in rng.sample(texts, 40):
            words = [w for w in dict.fromkeys(terms(text))]
            query = " ".join(rng.sample(words, min(3, len(words))))
            for channels in (None, {10, 12}):
                expected = bm25_top(docs, query, channels)
                got = await index.search(GUILD, query, channels)
                assert [(f.channel_id, f.message_id) for f in got] == [d for d, _ in expected], query
                assert [f.score for f in got] == pytest.approx([s for _, s in expected], abs=1e-5)
                assert all(f.text == docs[(f.channel_id, f.message_id)] for f in got)
                checked += bool(expected)
        assert checked >= 70
        assert await index.search(GUILD, "dog", set()) == [], "no channel visible, nothing found"
        assert await index.search(OTHER_GUILD, "dog", None) == [], "another server's index is its own"
    finally:
        await redis.aclose()


async def test_equal_descriptions_come_newest_first_and_a_deleted_one_is_gone(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    index = FindIndex(redis, KEYS)
    try:
        for i in range(8):
            assert await index.add(GUILD, 10, BASE_ID + (i << 30), "Image description: A red kite over the beach.")
        await index.add(GUILD, 10, BASE_ID + (9 << 30), "Image description: A dog on a sofa.")
        hits = await index.search(GUILD, "kites on a beach", None)
        assert [h.message_id for h in hits] == [BASE_ID + (i << 30) for i in (7, 6, 5, 4, 3)]

        assert await index.remove(GUILD, 10, BASE_ID + (7 << 30))
        assert not await index.remove(GUILD, 10, BASE_ID + (7 << 30)), "already gone"
        hits = await index.search(GUILD, "kite", None)
        assert BASE_ID + (7 << 30) not in [h.message_id for h in hits] and len(hits) == 5
        assert await index.size(GUILD) == 8

        await index.add(GUILD, 10, BASE_ID + (9 << 30), "Image description: A cat on a sofa.")  # described again
        assert [h.message_id for h in await index.search(GUILD, "cat", None)] == [BASE_ID + (9 << 30)]
        assert await index.search(GUILD, "dog", None) == [], "the old description's words are gone"
        assert await index.size(GUILD) == 8
    finally:
        await redis.aclose()


async def test_two_bot_processes_share_one_index_and_a_wipe_leaves_nothing_behind(redis_url: str,
                                                                                 data_dir: Path) -> None:
    one, two = Redis.from_url(redis_url), Redis.from_url(redis_url)
    first, second = FindIndex(one, KEYS), FindIndex(two, KEYS)
    texts = corpus(data_dir, 200)
    try:
        import asyncio

        await asyncio.gather(*(
            (first if i % 2 else second).add(GUILD, 10, BASE_ID + (i << 22), t) for i, t in enumerate(texts)))
        await first.add(OTHER_GUILD, 20, BASE_ID, texts[0])
        assert await second.size(GUILD) == 200
        assert await first.search(GUILD, "dog", None) == await second.search(GUILD, "dog", None) != []

        assert await second.turn_off_and_wipe(GUILD) == 200
        left = [k for k in await one.keys(f"{first.prefix(GUILD)}*")]
        assert left == [f"{first.prefix(GUILD)}:off".encode()], left
        assert not await first.add(GUILD, 10, BASE_ID, texts[0]), "indexing is off: refused by any process"
        assert await first.search(GUILD, "dog", None) == []
        assert not await first.enabled(GUILD)
        assert await first.size(OTHER_GUILD) == 1, "another server is untouched"

        await first.turn_on(GUILD)
        assert await second.add(GUILD, 10, BASE_ID, texts[0])
        assert await first.size(GUILD) == 1
    finally:
        await one.aclose()
        await two.aclose()
