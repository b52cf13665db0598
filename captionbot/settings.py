"""Settings read from the environment (prefix ``CAPTIONBOT_``; the bot token is ``DISCORD_TOKEN``).

Every setting here is listed, with its default, in ``deploy/.env.example``. Secrets (the Discord token, a
password inside the Redis URL) are ``SecretStr``: they never print in a log or a repr.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from captionbot.formats import DEFAULT_BEAM_SIZE, MAX_IMAGE_BYTES, MAX_PIXELS, RedisKeys

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO_ROOT / "models" / "default"
VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")  # auto, fp32 or a variant directory's name (manifest bounds)
DISCORD_CDN_ORIGINS = ("https://cdn.discordapp.com", "https://media.discordapp.net")


def origin(text: str) -> str:
    """``scheme://host[:port]`` from an origin or a bare host (https); ValueError for anything with a path."""
    text = text.strip().rstrip("/")
    parts = urlsplit(text if "://" in text else f"https://{text}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.fragment \
            or parts.username or parts.password:
        raise ValueError(f"{text!r} is not an origin like https://cdn.discordapp.com")
    return f"{parts.scheme}://{parts.netloc.lower()}"


class Settings(BaseSettings):
    """All runtime settings. Unset Redis URL means the embedded in-process queue."""

    model_config = SettingsConfigDict(env_prefix="CAPTIONBOT_", extra="ignore")

    # Discord
    discord_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DISCORD_TOKEN", "CAPTIONBOT_DISCORD_TOKEN")
    )
    standin_port: int = 8765  # local Discord stand-in (used when no token is given)
    # Shards (captionbot/sharding.py): none set = one unsharded process. SHARD_COUNT = shards in all; this process
    # runs SHARD_IDS ("0,1", "0-3"), or SHARDS_PER_PROCESS from PROCESS_INDEX (a number or a pod name "...-N").
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: str | None = None
    shards_per_process: int | None = Field(default=None, ge=1)
    process_index: str | None = None

    # Bot: where attachments may be downloaded from, for how long, and how many images people and automation may
    # ask for per ``rate_window_s``. Origins are ``https://host[:port]`` (a bare host means https), comma-separated.
    cdn_origins: Annotated[tuple[str, ...], NoDecode] = DISCORD_CDN_ORIGINS
    download_timeout_s: float = Field(default=15.0, gt=0)
    rate_window_s: float = Field(default=60.0, gt=0)
    user_limit: int = Field(default=10, ge=1)  # /caption, Describe image, mentions: images per person ...
    channel_limit: int = Field(default=30, ge=1)  # ... per channel ...
    guild_limit: int = Field(default=60, ge=1)  # ... per server
    alt_text_user_limit: int = Field(default=20, ge=1)  # automatic alt text: images per poster ...
    alt_text_channel_limit: int = Field(default=30, ge=1)  # ... per channel ...
    alt_text_guild_limit: int = Field(default=60, ge=1)  # ... per server (a budget of its own: commands come first)

    # Queue
    redis_url: SecretStr | None = None  # e.g. rediss://:password@redis:6379/0 ; None -> embedded
    stream: str = RedisKeys.jobs  # every Redis key starts with this name (see ``redis_keys``)
    group: str = RedisKeys.group
    queue_maxlen: int = 1000  # over this many waiting jobs, producers get "busy" (each lane its own count)
    queue_max_bytes: int = 256 * 1024 * 1024  # ... or over this many bytes of jobs in the stream (each lane)
    # Commands (a person waiting) go to the high-priority lane, which workers read first. Off: every job goes to
    # the one old stream (for bots upgraded before their workers, which do not read the lane yet; docs/queue.md).
    priority_lane: bool = True
    batch_size: int = 16  # up to N jobs per worker batch ...
    batch_wait_ms: int = 10  # ... or T milliseconds, whichever first (a backlog fills a batch at once)
    claim_idle_ms: int = 30_000  # a job pending this long on a dead worker is reclaimed
    max_attempts: int = 3  # after K failed attempts a job is dead-lettered
    retry_backoff_ms: int = 500  # a failed attempt runs again after this, doubling per attempt (<= claim_idle_ms)
    result_timeout_s: float = 60.0
    result_ttl_s: int = 600  # a bot instance's result stream, and each job's "answered" mark, live this long
    dead_letter_maxlen: int = 10_000  # the dead-letter stream keeps about this many failed jobs for inspection

    # Model / inference
    bundle: Path = DEFAULT_BUNDLE
    # auto: the bundle's int8 variant on CPU when it ships one (int8 encoder and decoder), else fp32 (CUDA);
    # or a variant by name: fp32 | int8 | fp16 (docs/inference.md, "An int8 encoder")
    variant: str = "auto"
    provider: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # 0 = onnxruntime's default (with worker_processes > 1: the CPUs, shared out)
    # ``captionbot worker`` as N processes, each a consumer of its own with threads // N onnxruntime threads (at least
    # 1): a CPU worker's per-image Python work (JPEG decode, beam search) uses one core per process. auto: one per
    # CPU this container may use (docs/inference.md, "Worker processes").
    worker_processes: int = Field(default=1, ge=1, le=256)
    # Decoder with I/O binding (its state stays on the GPU across steps, inference/device.py). Unset: on with CUDA.
    io_binding: bool | None = None
    # Load a bundle whose manifest has no digest (exported before digests): refused unless set (docs/contracts.md).
    allow_unsealed: bool = False
    beam_size: int = DEFAULT_BEAM_SIZE
    max_image_bytes: int = Field(default=MAX_IMAGE_BYTES, gt=0)
    max_pixels: int = Field(default=MAX_PIXELS, gt=0)
    # Transcribe text in images (screenshots, memes, signs). Unset: where the object labels say text is likely (free
    # for photos); true: every image through the text detector's gate (finds more, but costs photos over 15 % of
    # throughput on 2 cores); false: never (docs/inference.md, "Text in images").
    read_text: bool | None = None

    # Observability
    metrics_port: int = 0  # 0 = no metrics/health HTTP server
    log_level: str = "INFO"

    @field_validator("cdn_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value)
        origins = tuple(origin(str(item)) for item in items if str(item).strip())
        if not origins:
            raise ValueError("give at least one origin, e.g. https://cdn.discordapp.com")
        return origins

    @field_validator("variant", mode="before")
    @classmethod
    def _variant(cls, value: Any) -> str:
        text = str(value).strip().lower() or "auto"  # set but empty (``CAPTIONBOT_VARIANT=`` in a .env): auto
        if not VARIANT_NAME.fullmatch(text):
            raise ValueError("give auto, fp32, int8, fp16 or another variant the bundle ships (a plain name)")
        return text

    @field_validator("worker_processes", mode="before")
    @classmethod
    def _worker_processes(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            from captionbot.process import available_cpus

            return available_cpus()
        return value

    @property
    def redis_keys(self) -> RedisKeys:
        """The names of every key this deployment keeps in Redis."""
        return RedisKeys(jobs=self.stream, group=self.group)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; keyword overrides win (used by tests and the CLI). Raises pydantic's
    ``ValidationError`` for a bad value (:func:`explain` turns it into one line for people)."""
    return Settings(**overrides)  # pydantic validates each value


def explain(error: ValidationError) -> str:
    """One line naming each bad setting by its environment variable, with the value (never a secret's) and why."""
    secret = {name for name, f in Settings.model_fields.items() if f.annotation in (SecretStr, SecretStr | None)}
    parts = []
    for e in error.errors():
        name = str(e["loc"][0]) if e["loc"] else "?"
        env = "DISCORD_TOKEN" if name == "discord_token" else f"CAPTIONBOT_{name.upper()}"
        shown = "" if name in secret else f"={e.get('input')!r}"
        parts.append(f"{env}{shown}: {e['msg']}")
    return "invalid settings: " + "; ".join(parts)
