"""Downloading an attachment: only from the allowed CDN origins, streamed with a size cap and a timeout."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import yarl

from captionbot.formats import ErrorCode, ImageRejected

log = logging.getLogger(__name__)
CHUNK = 64 * 1024


def origin_of(url: str) -> str:
    u = yarl.URL(url)
    return str(u.origin()) if u.is_absolute() else ""


async def download(session: aiohttp.ClientSession, url: str, *, allowed_origins: tuple[str, ...], max_bytes: int,
                   timeout_s: float) -> bytes:
    """The file at ``url``. Refuses (DOWNLOAD_FAILED) any other origin, redirects, an HTTP error or a timeout;
    stops reading (TOO_LARGE) as soon as more than ``max_bytes`` arrive, whatever the headers claimed."""
    if origin_of(url) not in allowed_origins:
        raise ImageRejected(ErrorCode.DOWNLOAD_FAILED, f"not a Discord CDN URL: {origin_of(url) or url[:60]}")
    try:
        async with asyncio.timeout(timeout_s):
            async with session.get(url, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise ImageRejected(ErrorCode.DOWNLOAD_FAILED, f"CDN answered {resp.status}")
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise ImageRejected(ErrorCode.TOO_LARGE, f"{resp.content_length} bytes > {max_bytes}")
                buf = bytearray()
                async for chunk in resp.content.iter_chunked(CHUNK):
                    buf += chunk
                    if len(buf) > max_bytes:
                        raise ImageRejected(ErrorCode.TOO_LARGE, f"more than {max_bytes} bytes")
                return bytes(buf)
    except TimeoutError as exc:
        raise ImageRejected(ErrorCode.DOWNLOAD_FAILED, f"timed out after {timeout_s}s") from exc
    except aiohttp.ClientError as exc:
        raise ImageRejected(ErrorCode.DOWNLOAD_FAILED, f"{type(exc).__name__}: {exc}") from exc
