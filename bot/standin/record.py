"""What the bot sent to the stand-in, in order, including requests the stand-in refused (429, 5xx, 403)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from captionbot.bot.standin.world import Message


@dataclass
class SentFile:
    filename: str
    data: bytes
    content_type: str


@dataclass
class Sent:
    """One write by the bot. ``kind``: message | defer | interaction_message | followup | edit | delete | commands |
    modal (callback 9) | update (callback 7) | deferred_update (callback 6) | edit_message (PATCH in a channel)."""

    kind: str
    route: str
    status: int
    payload: dict[str, Any] = field(default_factory=dict)
    files: list[SentFile] = field(default_factory=list)
    channel_id: str | None = None
    message: Message | None = None  # the message created or edited, when one was
    interaction_id: str | None = None
    ephemeral: bool = False
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content(self) -> str:
        return self.message.content if self.message else str(self.payload.get("content") or "")

    @property
    def reply_to(self) -> str | None:
        return self.message.reference_id if self.message else None
