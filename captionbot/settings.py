"""Settings read from the environment (prefix ``CAPTIONBOT_``; the bot token is ``DISCORD_TOKEN``).

Every setting here is listed, with its default, in ``deploy/.env.example``. Secrets (the Discord token, a
password inside the Redis URL) are ``SecretStr``: they never print in a log or a repr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from captionbot.formats import DEFAULT_BEAM_SIZE, MAX_IMAGE_BYTES, MAX_PIXELS, RedisKeys

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO_ROOT / "models" / "default"


class Settings(BaseSettings):
    """All runtime settings. Unset Redis URL means the embedded in-process queue."""

    model_config = SettingsConfigDict(env_prefix="CAPTIONBOT_", extra="ignore")

    # Discord
    discord_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DISCORD_TOKEN", "CAPTIONBOT_DISCORD_TOKEN")
    )
    standin_port: int = 8765  # local Discord stand-in (used when no token is given)

    # Queue
    redis_url: SecretStr | None = None  # e.g. rediss://:password@redis:6379/0 ; None -> embedded
    stream: str = RedisKeys.jobs  # every Redis key starts with this name (see ``redis_keys``)
    group: str = RedisKeys.group
    queue_maxlen: int = 1000  # over this many waiting jobs, producers get "busy"
    queue_max_bytes: int = 256 * 1024 * 1024  # ... or over this many bytes of jobs in the stream
    batch_size: int = 16  # up to N jobs per worker batch ...
    batch_wait_ms: int = 50  # ... or T milliseconds, whichever first
    claim_idle_ms: int = 30_000  # a job pending this long on a dead worker is reclaimed
    max_attempts: int = 3  # after K failed attempts a job is dead-lettered
    retry_backoff_ms: int = 500  # a failed attempt runs again after this, doubling per attempt (<= claim_idle_ms)
    result_timeout_s: float = 60.0
    result_ttl_s: int = 600  # a bot instance's result stream, and each job's "answered" mark, live this long
    dead_letter_maxlen: int = 10_000  # the dead-letter stream keeps about this many failed jobs for inspection

    # Model / inference
    bundle: Path = DEFAULT_BUNDLE
    variant: str = "fp32"  # fp32 | int8 | fp16
    provider: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # 0 = onnxruntime's default
    beam_size: int = DEFAULT_BEAM_SIZE
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = MAX_PIXELS
    # Also transcribe text in images (memes, screenshots, signs) where a cheap gate finds some. Off by default: it
    # costs photos without text more than 15 % of throughput on 2 cores (docs/inference.md, "Text in images").
    read_text: bool = False

    # Observability
    metrics_port: int = 0  # 0 = no metrics/health HTTP server
    log_level: str = "INFO"

    @property
    def redis_keys(self) -> RedisKeys:
        """The names of every key this deployment keeps in Redis."""
        return RedisKeys(jobs=self.stream, group=self.group)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; keyword overrides win (used by tests and the CLI)."""
    return Settings(**overrides)  # pydantic validates each value
