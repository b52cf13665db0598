"""Keeps webhook and interaction tokens out of the log, whatever the log level.

At DEBUG, discord.py logs each request's URL (``/webhooks/<id>/<token>/...``: a channel webhook's token lets
anyone post in that channel as anyone) and the JSON it received (a created or listed webhook carries its
``token``). :func:`install` adds a filter to discord.py's HTTP loggers that replaces both with ``<token>``
before any handler sees the record.
"""

from __future__ import annotations

import logging
import re

LOGGERS = ("discord.http", "discord.webhook.async_")
URL_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[\w.-]{16,}")
JSON_TOKEN = re.compile(r"""(['"]token['"]\s*:\s*['"])[^'"]+""")


class RedactTokens(logging.Filter):
    """Rewrites a record's message with tokens replaced; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        redacted = JSON_TOKEN.sub(r"\1<token>", URL_TOKEN.sub(r"\1<token>", text))
        if redacted != text:
            record.msg, record.args = redacted, None
        return True


def install() -> None:
    """Add the filter to discord.py's HTTP loggers (once)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
