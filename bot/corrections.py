"""What people say about the bot's descriptions, kept in Redis: the descriptions the bot posted (so their buttons
work after a restart and in any bot process), 👍 / 👎 votes, and corrections per server matched by perceptual hash.

Keys (all under the job stream's name, like every captionbot key; ``P`` = ``<stream>:feedback``):

- ``P:desc:<message id>``: JSON of a posted :class:`Description` (TTL :data:`DESCRIPTION_TTL_S`);
- ``P:votes:<message id>``: hash user id -> ``up`` | ``down`` (same TTL): one vote per person, changeable;
- ``P:descs:<guild>``: sorted set of that server's description message ids by time (to wipe them);
- ``P:fix:<guild>``: hash pHash -> JSON :class:`Correction`; ``P:fix:<guild>:order``: sorted set pHash -> time;
  ``P:fix:<guild>:img:<pHash>``: a JPEG of the image (only while the server keeps images). At most
  ``max_corrections`` per server: the oldest go first, with their images;
- ``P:opts:<guild>``: hash of the server's feedback settings (``keep_images``).

Everything read back is checked (JSON shape, ids, hashes); a record that does not parse counts as absent, with a
log line, never an error for the person pressing a button. This module imports neither discord nor PIL, so the
``captionbot feedback`` command stays light.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from captionbot.bot.image_hash import MATCH_DISTANCE, distance, is_hash
from redis.asyncio import Redis

log = logging.getLogger(__name__)
DESCRIPTION_TTL_S = 30 * 24 * 3600  # buttons on a description work this long after it was posted
DEFAULT_MAX_CORRECTIONS = 500  # per server
MAX_CORRECTION_CHARS = 1024  # Discord's limit for an attachment's alt text, and the Edit box's
MAX_IMAGE_BYTES = 512 * 1024  # a kept image (a JPEG at most 512 px on its longest side) never exceeds this
STATUSES = ("ok", "corrected", "failed")
_ID = re.compile(r"^[0-9]{1,20}$")

# Store a correction, bounded: HSET + ZADD, the image set or dropped, then the oldest beyond the bound removed
# with their images. KEYS: fixes hash, order zset. ARGV: hash, json, now, max, image key prefix, image (or "").
STORE_CORRECTION = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
if ARGV[6] ~= '' then redis.call('SET', ARGV[5] .. ARGV[1], ARGV[6]) else redis.call('DEL', ARGV[5] .. ARGV[1]) end
local n = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if n <= 0 then return 0 end
local old = redis.call('ZRANGE', KEYS[2], 0, n - 1)
for _, h in ipairs(old) do
  redis.call('HDEL', KEYS[1], h)
  redis.call('DEL', ARGV[5] .. h)
end
redis.call('ZREM', KEYS[2], unpack(old))
return #old
"""


def valid_id(value: object) -> bool:
    """A Discord snowflake as text (what custom_ids and stored records carry)."""
    return isinstance(value, str) and bool(_ID.match(value))


@dataclass
class DescribedImage:
    """One image of a posted description: what the message says about it, and how to recognise it again."""

    filename: str
    text: str  # what the description says for this image (model's words, a person's correction, or a refusal)
    status: str  # ok | corrected | failed
    hash: str | None = None  # pHash, when the image was read
    url: str = ""  # where it was downloaded from (to keep a copy when a correction comes, where the server opted in)
    model_text: str = ""  # what the model said, kept when a person corrects it
    position: int | None = None  # a repost: the file's place in the reposted message (whose alt text this is)


@dataclass
class Description:
    """A description the bot posted: where, about whose image(s), and what it says for each."""

    message_id: str
    guild_id: str
    channel_id: str
    poster_id: str  # the image's poster (who may edit besides moderators)
    images: list[DescribedImage] = field(default_factory=list)
    repost: bool = False  # the description is the alt text of the images of a repost (bot/repost.py), not a reply

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Description:
        """Parse and check a stored record; ValueError when anything is off."""
        d = json.loads(raw)
        if not isinstance(d, dict) or not all(valid_id(d.get(k)) for k in
                                              ("message_id", "guild_id", "channel_id", "poster_id")):
            raise ValueError("description: ids missing or malformed")
        images = d.get("images")
        if not isinstance(images, list) or not 1 <= len(images) <= 10:
            raise ValueError("description: 1-10 images expected")
        out = []
        for im in images:
            if not isinstance(im, dict) or not isinstance(im.get("text"), str) or im.get("status") not in STATUSES:
                raise ValueError("description: malformed image")
            h = im.get("hash")
            if h is not None and not is_hash(h):
                raise ValueError("description: malformed hash")
            position = im.get("position")
            if position is not None and (type(position) is not int or not 0 <= position < 10):
                raise ValueError("description: malformed position")
            out.append(DescribedImage(str(im.get("filename", "")), im["text"], im["status"], h,
                                      str(im.get("url", "")), str(im.get("model_text", "")), position))
        repost = d.get("repost", False)
        if not isinstance(repost, bool) or (repost and any(im.position is None for im in out)):
            raise ValueError("description: a repost's images need their positions")
        return cls(d["message_id"], d["guild_id"], d["channel_id"], d["poster_id"], out, repost)


@dataclass(frozen=True)
class Correction:
    """A person's description of an image, for this server, found again by its pHash."""

    hash: str
    text: str
    model_text: str  # what the bot had said
    by: str  # user id
    at: float  # unix time
    has_image: bool = False

    @classmethod
    def from_json(cls, h: str, raw: str | bytes) -> Correction:
        d = json.loads(raw)
        if not is_hash(h) or not isinstance(d, dict) or not isinstance(d.get("text"), str) or not d["text"].strip() \
                or len(d["text"]) > MAX_CORRECTION_CHARS or not valid_id(d.get("by")):
            raise ValueError("correction: malformed")
        return cls(h, d["text"], str(d.get("model_text", "")), d["by"], float(d.get("at", 0)),
                   bool(d.get("has_image", False)))

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("hash")
        return json.dumps(d)


def _text(value: object) -> str | None:
    """A Redis reply as text (None stays None)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


class FeedbackStore:
    def __init__(self, redis: Redis, stream: str, max_corrections: int = DEFAULT_MAX_CORRECTIONS,
                 match_distance: int = MATCH_DISTANCE) -> None:
        self.redis = redis
        self.prefix = f"{stream}:feedback"
        self.max_corrections = max_corrections
        self.match_distance = match_distance
        self._store_correction = redis.register_script(STORE_CORRECTION)

    # -- keys --------------------------------------------------------------------------------------------------

    def _desc(self, message_id: str) -> str:
        return f"{self.prefix}:desc:{message_id}"

    def _votes(self, message_id: str) -> str:
        return f"{self.prefix}:votes:{message_id}"

    def _descs(self, guild_id: str) -> str:
        return f"{self.prefix}:descs:{guild_id}"

    def _fixes(self, guild_id: str) -> str:
        return f"{self.prefix}:fix:{guild_id}"

    def _order(self, guild_id: str) -> str:
        return f"{self.prefix}:fix:{guild_id}:order"

    def _image_prefix(self, guild_id: str) -> str:
        return f"{self.prefix}:fix:{guild_id}:img:"

    def _opts(self, guild_id: str) -> str:
        return f"{self.prefix}:opts:{guild_id}"

    # -- descriptions and votes ----------------------------------------------------------------------------------

    async def remember(self, desc: Description) -> None:
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._desc(desc.message_id), desc.to_json(), ex=DESCRIPTION_TTL_S)
            pipe.zadd(self._descs(desc.guild_id), {desc.message_id: now})
            pipe.zremrangebyscore(self._descs(desc.guild_id), "-inf", now - DESCRIPTION_TTL_S)
            await pipe.execute()

    async def description(self, message_id: str) -> Description | None:
        """The stored description posted as ``message_id``; None when unknown, expired or unreadable."""
        if not valid_id(message_id):
            return None
        raw = await self.redis.get(self._desc(message_id))
        if raw is None:
            return None
        try:
            desc = Description.from_json(raw)
        except (ValueError, TypeError) as exc:
            log.warning("stored description %s is unreadable (%s); treated as absent", message_id, exc)
            return None
        return desc if desc.message_id == message_id else None

    async def update_description(self, desc: Description) -> None:
        """Write ``desc`` back, keeping the time it has left."""
        await self.redis.set(self._desc(desc.message_id), desc.to_json(), keepttl=True)

    async def vote(self, message_id: str, user_id: str, up: bool) -> str | None:
        """Record one person's vote on a description; returns their previous vote (``up``/``down``) or None."""
        key = self._votes(message_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(key, user_id)
            pipe.hset(key, user_id, "up" if up else "down")
            pipe.expire(key, DESCRIPTION_TTL_S)
            before, *_ = await pipe.execute()
        return _text(before)

    async def votes(self, message_id: str) -> dict[str, int]:
        """``{"up": n, "down": m}`` for one description."""
        counts = {"up": 0, "down": 0}
        for v in (await self.redis.hgetall(self._votes(message_id))).values():
            vote = _text(v)
            if vote in counts:
                counts[vote] += 1
        return counts

    # -- corrections -----------------------------------------------------------------------------------------------

    async def correct(self, guild_id: str, correction: Correction, image_jpeg: bytes | None = None) -> str:
        """Keep ``correction`` for this server (replacing one for the same picture); returns the hash it is kept
        under. The oldest corrections beyond the bound go, with their images."""
        existing = await self._nearest(guild_id, correction.hash)
        key_hash = existing or correction.hash
        image = image_jpeg if image_jpeg and len(image_jpeg) <= MAX_IMAGE_BYTES else None
        kept = replace(correction, hash=key_hash, has_image=image is not None)
        evicted = await self._store_correction(
            keys=[self._fixes(guild_id), self._order(guild_id)],
            args=[key_hash, kept.to_json(), kept.at, self.max_corrections, self._image_prefix(guild_id), image or b""])
        if evicted:
            log.info("guild %s: %d oldest correction(s) dropped (at most %d are kept)", guild_id, evicted,
                     self.max_corrections)
        return key_hash

    async def _nearest(self, guild_id: str, h: str) -> str | None:
        best: tuple[int, str] | None = None
        for raw in await self.redis.zrange(self._order(guild_id), 0, -1):
            other = _text(raw) or ""
            if not is_hash(other):
                continue
            d = distance(h, other)
            if d <= self.match_distance and (best is None or d < best[0]):
                best = (d, other)
        return best[1] if best else None

    async def find(self, guild_id: str, h: str) -> Correction | None:
        """This server's correction for the picture with pHash ``h`` (the nearest within the match distance)."""
        found = await self._nearest(guild_id, h)
        if found is None:
            return None
        raw = await self.redis.hget(self._fixes(guild_id), found)
        if raw is None:
            return None
        try:
            return Correction.from_json(found, raw)
        except (ValueError, TypeError) as exc:
            log.warning("guild %s: stored correction %s is unreadable (%s); ignored", guild_id, found, exc)
            return None

    async def corrections(self, guild_id: str) -> list[Correction]:
        """Every correction kept for this server, oldest first (unreadable ones left out, with a log line)."""
        order = [_text(h) or "" for h in await self.redis.zrange(self._order(guild_id), 0, -1)]
        if not order:
            return []
        values = await self.redis.hmget(self._fixes(guild_id), order)
        out = []
        for h, raw in zip(order, values, strict=True):
            if raw is None:
                continue
            try:
                out.append(Correction.from_json(h, raw))
            except (ValueError, TypeError) as exc:
                log.warning("guild %s: stored correction %s is unreadable (%s); left out", guild_id, h, exc)
        return out

    async def image(self, guild_id: str, h: str) -> bytes | None:
        data = await self.redis.get(self._image_prefix(guild_id) + h) if is_hash(h) else None
        if isinstance(data, str):  # a client with decode_responses would have garbled it: treat as absent
            return None
        return bytes(data) if data else None

    async def wipe(self, guild_id: str) -> int:
        """Forget this server's corrections, their images, its descriptions and their votes; returns how many
        corrections there were. Its settings stay."""
        hashes = [_text(h) or "" for h in await self.redis.zrange(self._order(guild_id), 0, -1)]
        messages = [_text(m) or "" for m in await self.redis.zrange(self._descs(guild_id), 0, -1)]
        keys = [self._fixes(guild_id), self._order(guild_id), self._descs(guild_id),
                *(self._image_prefix(guild_id) + h for h in hashes),
                *(k for m in messages for k in (self._desc(m), self._votes(m)))]
        for i in range(0, len(keys), 500):
            await self.redis.delete(*keys[i:i + 500])
        return len(hashes)

    # -- the server's settings ---------------------------------------------------------------------------------

    async def set_keep_images(self, guild_id: str, keep: bool) -> None:
        """Whether corrections keep a copy of the image (for `captionbot feedback export`). Turning it off deletes
        the copies kept so far."""
        await self.redis.hset(self._opts(guild_id), "keep_images", "1" if keep else "0")
        if not keep:
            hashes = [_text(h) or "" for h in await self.redis.zrange(self._order(guild_id), 0, -1)]
            if hashes:
                await self.redis.delete(*(self._image_prefix(guild_id) + h for h in hashes))
                fixes = await self.corrections(guild_id)
                if fixes:
                    await self.redis.hset(self._fixes(guild_id), mapping={
                        c.hash: replace(c, has_image=False).to_json() for c in fixes})

    async def keeps_images(self, guild_id: str) -> bool:
        return _text(await self.redis.hget(self._opts(guild_id), "keep_images")) == "1"

    async def status(self, guild_id: str) -> dict[str, Any]:
        return {"corrections": await self.redis.zcard(self._order(guild_id)),
                "keep_images": await self.keeps_images(guild_id), "max_corrections": self.max_corrections}
