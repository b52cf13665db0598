"""Connecting to the queue's Redis: a real server from ``settings.redis_url``, or the embedded backend.

A real connection retries each command with jittered exponential backoff and checks idle connections before use,
so bot and workers ride out a Redis restart by themselves. With no URL configured, the queue lives in this process
(fakeredis on one shared in-memory server), so ``captionbot run`` can host bot and worker together. fakeredis is
imported only then: a deployed bot or worker (with a Redis URL) never loads it, and its images need not install it
(it comes with the ``embedded`` extra, which ``make run`` installs).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import unquote

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from captionbot.process import StartupError
from captionbot.settings import Settings

if TYPE_CHECKING:
    import fakeredis

T = TypeVar("T")


class DeadlineExceeded(RedisTimeoutError):
    """A Redis call did not answer before its caller's deadline (Redis frozen, or the network)."""


async def within(deadline: float, call: Awaitable[T]) -> T:
    """Await ``call`` until ``deadline`` (``time.monotonic()``), then raise :class:`DeadlineExceeded`.

    The call runs as its own task and is never cancelled mid-command (redis-py may swallow that, see queue.md): past
    the deadline it is left to finish or fail on its socket timeout, its outcome discarded."""
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
    if task in done:
        return task.result()
    task.add_done_callback(_discard_outcome)
    raise DeadlineExceeded("no answer from Redis before the deadline")


def _discard_outcome(task: asyncio.Future[T]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" warning


# Connection errors a caller should ride out (log, back off, try again) rather than treat as a bug.
REDIS_DOWN_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)

_embedded_server: fakeredis.FakeServer | None = None
_embedded_lock = threading.Lock()


class EmbeddedQueueUnavailable(StartupError):
    """No Redis URL is set and the in-process queue's backend (fakeredis) is not installed."""


def embedded_server() -> fakeredis.FakeServer:
    """The one in-process Redis of this process: every embedded connection sees the same streams."""
    global _embedded_server
    try:
        import fakeredis
    except ModuleNotFoundError as exc:
        raise EmbeddedQueueUnavailable(
            "CAPTIONBOT_REDIS_URL is not set and the in-process queue needs fakeredis: set the URL of your Redis, "
            "or install the embedded queue (pip install 'captionbot[embedded]')"
        ) from exc
    with _embedded_lock:
        if _embedded_server is None:
            _embedded_server = fakeredis.FakeServer()
        return _embedded_server


async def connect_redis(settings: Settings) -> Redis:
    """A ``redis.asyncio.Redis`` for the queue (bytes in, bytes out). Does not wait for the server to be up."""
    if is_embedded(settings):
        server = embedded_server()
        from fakeredis import aioredis as fake_aioredis

        return fake_aioredis.FakeRedis(server=server)
    assert settings.redis_url is not None
    url = parse_redis_url(settings.redis_url.get_secret_value())
    try:
        return _connect(url)
    except ValueError as exc:  # the message can only hold the URL without its credentials
        raise StartupError(f"CAPTIONBOT_REDIS_URL is not a valid Redis URL ({url.public}): {exc}") from None


@dataclass(frozen=True)
class RedisUrl:
    """A Redis URL split so that its credentials never travel with the rest (``public`` is safe to print)."""

    public: str  # scheme://host:port/db?options, without user or password
    username: str | None = field(repr=False)
    password: str | None = field(repr=False)


def parse_redis_url(url: str) -> RedisUrl:
    """Split ``redis[s]://[user][:password]@host:port/db`` at the *last* ``@``, so a password may hold ``/``, ``?``,
    ``#`` or ``@`` as typed; percent-escapes in it (``%2F``) are decoded too, so an encoded password works as well
    (write a literal ``%`` as ``%25``). Raises :class:`StartupError` without any part of the password."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("redis", "rediss", "unix"):
        raise StartupError("CAPTIONBOT_REDIS_URL must start with redis://, rediss:// or unix:// (value hidden)")
    userinfo, at, location = rest.rpartition("@")
    if not at:
        return RedisUrl(url, None, None)
    user, _, password = userinfo.partition(":")  # redis://name@host: a user name only, as redis-py reads it
    return RedisUrl(f"{scheme}://{location}", unquote(user) or None, unquote(password) or None)


MAX_CONNECTIONS = 100  # per process; more concurrent commands wait for a free connection
POOL_WAIT_S = 10.0  # a command waits this long at most for a free connection (callers' deadlines come first)


def _connect(url: RedisUrl) -> Redis:
    # A blocking pool: a burst of more concurrent commands than connections waits its turn. (redis-py's default
    # pool raises MaxConnectionsError, a ConnectionError: a flood of callers took it for "Redis down" and backed
    # off for seconds, issue 17 item 7.)
    pool = BlockingConnectionPool.from_url(
        url.public,  # TLS (rediss://) and options come in the URL; the credentials beside it
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        username=url.username,
        password=url.password,
        # Short blips are retried inside redis-py; longer outages by the callers' own loops (client, listener,
        # worker), which back off and keep going, so one command never stalls for long.
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=10,
        socket_connect_timeout=2,
        socket_timeout=10,  # longer than any blocking read we issue (<= 1 s)
        socket_keepalive=True,
    )
    return Redis.from_pool(pool)


def is_embedded(settings: Settings) -> bool:
    """No Redis URL configured (unset or empty, as in a .env with ``CAPTIONBOT_REDIS_URL=``)."""
    return settings.redis_url is None or not settings.redis_url.get_secret_value().strip()


def describe(settings: Settings) -> str:
    """Where the queue lives, for logs: host and port only, never the password."""
    if settings.redis_url is None or is_embedded(settings):
        return "embedded in-process queue"
    public = parse_redis_url(settings.redis_url.get_secret_value()).public
    return public.partition("?")[0]
