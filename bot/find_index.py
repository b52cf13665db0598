"""The search index behind ``/find``: every description the bot posts in a server, ranked by BM25, kept in Redis.

One index per guild, shared by every bot process on the same Redis (every change and every search is one Lua
script, so two processes indexing or deleting at once never leave it half-changed). Under
``<stream>:find:{<guild id>}`` (the braces keep a guild's keys in one Redis Cluster slot):

- ``:t:<term>``  sorted set, one posting per document that has the term: member ``<message id>:<channel id>``
  (the message id zero-padded to 20 digits, so members sort as ids do: by time), score the term's BM25 weight in
  that document, ``tf·(k1+1) / (tf + k1·(1 − b + b·len/AVG_LEN))``, in 1/4096 units;
- ``:d:<member>``  hash: ``text`` (what the bot posted), ``at`` (unix time), ``len``, ``terms``;
- ``:docs``  sorted set of documents by time (for wiping without a SCAN); ``:terms`` set of the terms in use;
- ``:stats``  hash: ``n`` documents (BM25's N for the idf);
- ``:off``  present while the server has indexing turned off (adds are refused inside the add script).

BM25 (Robertson & Zaragoza 2009; Lucene's idf ``ln(1 + (N − df + 0.5) / (df + 0.5))``, k1 1.2, b 0.75) with the
average description length fixed at ``AVG_LEN`` rather than the running mean, so a term's weight in a document is
known when it is indexed. A search is one script (:data:`SEARCH`): ``ZUNIONSTORE`` of the query terms' postings
``WEIGHTS`` their idfs sums BM25 per document inside Redis (C, not Lua), then the union is read best first,
skipping channels the asker cannot see, until ``limit`` hits; equal scores come newest first (Redis orders equal
scores by member, i.e. by message id). The scratch union is deleted in the same script. ``bench/find_index.py``
measures it on 100,000 descriptions.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from captionbot.formats import RedisKeys

log = logging.getLogger(__name__)
K1, B = 1.2, 0.75
AVG_LEN = 8.0  # BM25's average description length in terms, fixed (descriptions average 6-9 terms)
IMPACT_SCALE = 4096  # weights are stored in 1/4096 units
MAX_TEXT_CHARS = 2000
MAX_QUERY_TERMS = 16
STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "been", "by", "for", "from", "has", "have", "he", "her", "his", "in",
    "into", "is", "it", "its", "of", "on", "or", "she", "that", "the", "their", "them", "they", "this", "to", "was",
    "were", "with", "image", "description", "descriptions", "text", "possibly"})

ADD = """
local p, doc = ARGV[1], ARGV[2]
if redis.call('EXISTS', p .. ':off') == 1 then return 0 end
local dkey = p .. ':d:' .. doc
local old = redis.call('HGET', dkey, 'terms')
if old then
  for t in string.gmatch(old, '%S+') do redis.call('ZREM', p .. ':t:' .. t, doc) end
  redis.call('HINCRBY', p .. ':stats', 'n', -1)
end
local terms = {}
for i = 6, #ARGV, 2 do
  redis.call('ZADD', p .. ':t:' .. ARGV[i], ARGV[i + 1], doc)
  redis.call('SADD', p .. ':terms', ARGV[i])
  terms[#terms + 1] = ARGV[i]
end
redis.call('DEL', dkey)
redis.call('HSET', dkey, 'text', ARGV[3], 'at', ARGV[4], 'len', ARGV[5], 'terms', table.concat(terms, ' '))
redis.call('ZADD', p .. ':docs', ARGV[4], doc)
redis.call('HINCRBY', p .. ':stats', 'n', 1)
return 1
"""

REMOVE = """
local p, doc = ARGV[1], ARGV[2]
local dkey = p .. ':d:' .. doc
local old = redis.call('HGET', dkey, 'terms')
if not old then return 0 end
for t in string.gmatch(old, '%S+') do redis.call('ZREM', p .. ':t:' .. t, doc) end
redis.call('DEL', dkey)
redis.call('ZREM', p .. ':docs', doc)
redis.call('HINCRBY', p .. ':stats', 'n', -1)
return 1
"""

# ARGV: prefix, limit, allowed channels ("*" = all, else ids separated by spaces), terms...
SEARCH = """
local p, limit = ARGV[1], tonumber(ARGV[2])
local all = ARGV[3] == '*'
local allowed = {}
if not all then for c in string.gmatch(ARGV[3], '%d+') do allowed[c] = true end end
local n = tonumber(redis.call('HGET', p .. ':stats', 'n') or '0') or 0
if n <= 0 then return {} end
local keys, weights = {}, {}
for i = 4, #ARGV do
  local key = p .. ':t:' .. ARGV[i]
  local df = redis.call('ZCARD', key)
  if df > 0 then
    keys[#keys + 1] = key
    weights[#weights + 1] = string.format('%.17g', math.log(1 + (n - df + 0.5) / (df + 0.5)))
  end
end
if #keys == 0 then return {} end
local tmp = p .. ':scratch'
local args = {tmp, #keys}
for _, k in ipairs(keys) do args[#args + 1] = k end
args[#args + 1] = 'WEIGHTS'
for _, w in ipairs(weights) do args[#args + 1] = w end
redis.call('ZUNIONSTORE', unpack(args))
local out = {}
local pos, chunk = 0, limit * 4
while #out < 2 * limit do
  local part = redis.call('ZREVRANGE', tmp, pos, pos + chunk - 1, 'WITHSCORES')
  if #part == 0 then break end
  for j = 1, #part, 2 do
    if all or allowed[string.match(part[j], ':(%d+)$')] then
      out[#out + 1] = part[j]
      out[#out + 1] = part[j + 1]
      if #out >= 2 * limit then break end
    end
  end
  pos = pos + chunk
  chunk = math.min(chunk * 4, 10000)
end
redis.call('DEL', tmp)
return out
"""


def weight(tf: int, length: int) -> float:
    """A term's BM25 weight (without its idf) in a document of ``length`` terms where it occurs ``tf`` times."""
    return tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / AVG_LEN))


def posting_score(tf: int, length: int) -> int:
    """The posting's sorted-set score: the term's weight in the document in 1/4096 units."""
    return round(weight(tf, length) * IMPACT_SCALE)


def member(channel_id: int, message_id: int) -> str:
    """A document's name in the postings: the message id padded to 20 digits (members sort by time), the channel."""
    return f"{message_id:020d}:{channel_id}"


def _stem(word: str) -> str:
    """Harman's S-stemmer (1991): plurals to singulars ("dogs" -> "dog", "puppies" -> "puppy", "dresses" ->
    "dress"), nothing else. Cheap and predictable for short descriptions."""
    if len(word) <= 3:
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1] if not word.endswith(("sses", "shes", "ches", "xes")) else word[:-2]
    if word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def terms(text: str) -> list[str]:
    """The index terms of ``text``: lower-cased words of letters and digits, stop words out, plurals stemmed."""
    return [_stem(w) for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS][:400]


@dataclass(frozen=True)
class Found:
    """One search hit: where the image is and what the bot said about it."""

    channel_id: int
    message_id: int
    text: str
    score: float
    at: float

    def jump_url(self, guild_id: int) -> str:
        return f"https://discord.com/channels/{guild_id}/{self.channel_id}/{self.message_id}"


class FindIndex:
    """Add, remove and search one Redis's per-guild description indexes."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys
        self._add = redis.register_script(ADD)
        self._remove = redis.register_script(REMOVE)
        self._search = redis.register_script(SEARCH)

    def prefix(self, guild_id: int) -> str:
        return f"{self.keys.jobs}:find:{{{guild_id}}}"

    async def add(self, guild_id: int, channel_id: int, message_id: int, text: str, extra: str = "",
                  at: float | None = None) -> bool:
        """Index (or re-index) the description ``text`` of the image in message ``message_id``; ``extra`` is
        searched but not shown (object labels). False when the server has indexing turned off (or there is
        nothing to index)."""
        args = self.add_args(guild_id, channel_id, message_id, text, extra, at)
        return bool(args) and bool(await self._add(args=args))

    def add_args(self, guild_id: int, channel_id: int, message_id: int, text: str, extra: str = "",
                 at: float | None = None) -> list[str | int | float]:
        """The add script's arguments ([] when the text has no index terms); ``add_many`` pipelines them."""
        shown = text[:MAX_TEXT_CHARS]
        found = terms(f"{shown} {extra}")
        if not found:
            return []
        args: list[str | int | float] = [self.prefix(guild_id), member(channel_id, message_id), shown,
                                         at if at is not None else time.time(), len(found)]
        for term, tf in Counter(found).items():
            args += [term, posting_score(tf, len(found))]
        return args

    async def add_many(self, batch: Sequence[list[str | int | float]]) -> int:
        """Run many :meth:`add_args` results in one pipeline (bulk loads); returns how many were indexed."""
        pipe = self.redis.pipeline(transaction=False)
        for args in batch:
            if args:
                await self._add(args=args, client=pipe)
        return sum(bool(x) for x in await pipe.execute())

    async def remove(self, guild_id: int, channel_id: int, message_id: int) -> bool:
        """Drop a message's description from the index (its message was deleted); False if it was not there."""
        return bool(await self._remove(args=[self.prefix(guild_id), member(channel_id, message_id)]))

    async def search(self, guild_id: int, query: str, channels: Iterable[int] | None, limit: int = 5) -> list[Found]:
        """The best ``limit`` descriptions for ``query`` (BM25), in ``channels`` only (None: every channel)."""
        wanted = list(dict.fromkeys(terms(query)))[:MAX_QUERY_TERMS]
        if not wanted:
            return []
        allowed = "*" if channels is None else " ".join(str(c) for c in channels)
        if not allowed:
            return []
        p = self.prefix(guild_id)
        raw = await self._search(args=[p, limit, allowed, *wanted])
        hits = [(_s(raw[i]), float(raw[i + 1]) / IMPACT_SCALE) for i in range(0, len(raw), 2)]
        if not hits:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for doc, _ in hits:
            pipe.hmget(f"{p}:d:{doc}", "text", "at")
        details: Sequence[list[bytes | None]] = await pipe.execute()
        out = []
        for (doc, score), (text, at) in zip(hits, details, strict=True):
            if text is None:
                continue  # removed between the search and now
            message, _, channel = doc.partition(":")
            out.append(Found(int(channel), int(message), _s(text), score, float(_s(at or b"0"))))
        return out

    async def size(self, guild_id: int) -> int:
        return int(await self.redis.hget(f"{self.prefix(guild_id)}:stats", "n") or 0)

    async def enabled(self, guild_id: int) -> bool:
        return not await self.redis.exists(f"{self.prefix(guild_id)}:off")

    async def turn_on(self, guild_id: int) -> None:
        await self.redis.delete(f"{self.prefix(guild_id)}:off")

    async def turn_off_and_wipe(self, guild_id: int) -> int:
        """Stop indexing this server and delete its whole index; returns how many descriptions were dropped. The
        ``off`` mark is set first, so a description posted meanwhile by any bot process is refused, not kept."""
        p = self.prefix(guild_id)
        await self.redis.set(f"{p}:off", b"1")
        dropped = await self.size(guild_id)
        used = sorted(_s(t) for t in await self.redis.smembers(f"{p}:terms"))
        for i in range(0, len(used), 1000):
            await self.redis.unlink(*(f"{p}:t:{t}" for t in used[i : i + 1000]))
        start = 0
        while docs := [d for d in await self.redis.zrange(f"{p}:docs", start, start + 999)
                       if isinstance(d, bytes | str)]:
            await self.redis.unlink(*(f"{p}:d:{_s(d)}" for d in docs))
            start += len(docs)
        await self.redis.unlink(f"{p}:terms", f"{p}:docs", f"{p}:stats")
        log.info("find index of guild %s wiped: %d descriptions", guild_id, dropped)
        return dropped


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
