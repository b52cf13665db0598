"""Gateway transport compression, server side: one stream per connection, flushed at every message.

discord.py asks for ``zstd-stream`` when ``zstandard`` is importable and ``zlib-stream`` otherwise; Discord
answers with a single compression context for the whole connection, flushed (not ended) after each payload.
"""

from __future__ import annotations

import zlib
from typing import Protocol


class StreamCompressor(Protocol):
    def compress(self, text: str) -> bytes: ...


class ZlibStream:
    """zlib-stream: every payload ends with the Z_SYNC_FLUSH marker ``00 00 ff ff`` the client waits for."""

    def __init__(self) -> None:
        self._z = zlib.compressobj()

    def compress(self, text: str) -> bytes:
        return self._z.compress(text.encode()) + self._z.flush(zlib.Z_SYNC_FLUSH)


class ZstdStream:
    """zstd-stream: one zstd frame for the connection, a block flush after each payload."""

    def __init__(self) -> None:
        import zstandard

        self._flush_mode = zstandard.COMPRESSOBJ_FLUSH_BLOCK
        self._z = zstandard.ZstdCompressor().compressobj()

    def compress(self, text: str) -> bytes:
        return self._z.compress(text.encode()) + self._z.flush(self._flush_mode)


def compressor_for(name: str | None) -> StreamCompressor | None:
    """The compressor for a ``compress=`` query value; None for plain-text frames; ValueError for unknown ones."""
    if not name:
        return None
    if name == "zlib-stream":
        return ZlibStream()
    if name == "zstd-stream":
        return ZstdStream()
    raise ValueError(f"unsupported transport compression {name!r}")
