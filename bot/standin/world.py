"""The stand-in's world: one guild (or two, for sharding) with channels, members, roles and messages, and their
Discord JSON payloads.

Payloads carry the fields discord.py 2.7 reads (checked against its parsers), nothing decorative.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Permission bits (Discord's numbering).
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
MANAGE_MESSAGES = 1 << 13
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MANAGE_WEBHOOKS = 1 << 29
USE_APPLICATION_COMMANDS = 1 << 31
EVERYONE_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY | (
    USE_APPLICATION_COMMANDS
)

# Gateway intents the stand-in honours.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_MESSAGE_CONTENT = 1 << 15

EPHEMERAL = 1 << 6  # message flag

_DISCORD_EPOCH_MS = 1420070400000
_counter = itertools.count(1)


def snowflake() -> str:
    """A fresh, increasing Discord-style id."""
    return str(((int(time.time() * 1000) - _DISCORD_EPOCH_MS) << 22) | (next(_counter) & 0x3FFFFF))


def snowflake_on_shard(shard_id: int, shard_count: int) -> str:
    """A fresh id that Discord's rule ``(id >> 22) % shard_count`` routes to ``shard_id`` (for a guild)."""
    ms = int(time.time() * 1000) - _DISCORD_EPOCH_MS
    ms += (shard_id - ms) % shard_count
    return str((ms << 22) | (next(_counter) & 0x3FFFFF))


def shard_of(guild_id: str | int, shard_count: int) -> int:
    """The shard that receives a guild's events: Discord's ``(guild_id >> 22) % num_shards``."""
    return (int(guild_id) >> 22) % shard_count


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Role:
    id: str
    name: str
    permissions: int
    position: int = 0
    guild_id: str = ""  # the guild it belongs to ("" = the first guild)

    def payload(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "permissions": str(self.permissions), "position": self.position,
                "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}


@dataclass
class User:
    id: str
    name: str
    bot: bool = False
    roles: list[str] = field(default_factory=list)  # role ids besides @everyone
    avatar_url: str | None = None  # shown on the local page (e.g. a webhook post under a member's avatar)

    def payload(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.name, "global_name": self.name, "discriminator": "0",
                "avatar": None, "bot": self.bot}

    def member_payload(self, permissions: int | None = None, roles: list[str] | None = None) -> dict[str, Any]:
        """The member object; ``roles``: the role ids to show (default: all of the user's)."""
        shown = list(self.roles) if roles is None else roles
        d: dict[str, Any] = {"user": self.payload(), "roles": shown, "joined_at": now_iso(),
                             "deaf": False, "mute": False, "nick": None, "flags": 0}
        if permissions is not None:
            d["permissions"] = str(permissions)
        return d


@dataclass
class Attachment:
    """A file in a message, served by the stand-in's CDN (``url``), or a crafted one pointing elsewhere."""

    id: str
    filename: str
    data: bytes
    content_type: str | None
    url: str = ""
    description: str | None = None  # alt text
    declared_size: int | None = None  # what the metadata claims (defaults to len(data))

    def payload(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "filename": self.filename, "size": self.declared_size or len(self.data),
                             "url": self.url, "proxy_url": self.url}
        if self.content_type:
            d["content_type"] = self.content_type
        if self.description:
            d["description"] = self.description
        return d


@dataclass
class Channel:
    id: str
    name: str
    guild_id: str
    bot_denied: int = 0  # permission bits denied to the bot here (fault: "can't send", "can't attach")
    bot_allowed: int = 0  # permission bits granted to the bot here (e.g. Manage Webhooks for repost mode)
    hidden_from: set[str] = field(default_factory=set)  # ids of members who cannot see this channel

    def payload(self, bot_id: str) -> dict[str, Any]:
        overwrites = []
        if self.bot_denied or self.bot_allowed:
            overwrites.append({"id": bot_id, "type": 1, "allow": str(self.bot_allowed), "deny": str(self.bot_denied)})
        for member_id in sorted(self.hidden_from):
            overwrites.append({"id": member_id, "type": 1, "allow": "0", "deny": str(VIEW_CHANNEL)})
        return {"id": self.id, "type": 0, "name": self.name, "guild_id": self.guild_id, "position": 0,
                "permission_overwrites": overwrites, "nsfw": False, "parent_id": None, "topic": None,
                "last_message_id": None, "rate_limit_per_user": 0}


@dataclass
class Message:
    id: str
    channel_id: str
    guild_id: str | None
    author: User
    content: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    reference_id: str | None = None  # the message this one replies to
    interaction_id: str | None = None  # the interaction this message answers
    allowed_mentions: dict[str, Any] | None = None
    timestamp: str = field(default_factory=now_iso)
    embeds: list[dict[str, Any]] = field(default_factory=list)  # as the bot sent them
    components: list[dict[str, Any]] = field(default_factory=list)  # action rows with buttons, as sent
    webhook_id: str | None = None  # posted through a webhook: ``author`` is then the name it was posted under
    avatar_url: str | None = None  # the avatar a webhook message was posted with (``avatar_url``), if any
    edited_timestamp: str | None = None

    def payload(self, *, with_content: bool = True) -> dict[str, Any]:
        """Discord's message object. ``with_content=False`` blanks what the message-content intent guards."""
        d: dict[str, Any] = {
            "id": self.id, "channel_id": self.channel_id, "author": self.author.payload(),
            "content": self.content if with_content else "",
            "attachments": [a.payload() for a in self.attachments] if with_content else [],
            "embeds": self.embeds if with_content else [], "components": self.components if with_content else [],
            "mentions": [], "mention_roles": [], "mention_everyone": False,
            "pinned": False, "tts": False, "type": 19 if self.reference_id else 0, "flags": self.flags,
            "timestamp": self.timestamp, "edited_timestamp": self.edited_timestamp,
        }
        if self.webhook_id:  # Discord: the webhook as author (discriminator 0000), no member object
            d["webhook_id"] = self.webhook_id
            d["author"] = {**self.author.payload(), "id": self.webhook_id, "discriminator": "0000", "bot": True}
        if self.guild_id:
            d["guild_id"] = self.guild_id
        if self.guild_id and not self.webhook_id:
            d["member"] = {"roles": list(self.author.roles), "joined_at": now_iso(), "deaf": False, "mute": False}
        if self.reference_id:
            d["message_reference"] = {"type": 0, "message_id": self.reference_id, "channel_id": self.channel_id,
                                      "guild_id": self.guild_id}
        return d


@dataclass
class World:
    """A guild ("Stand-in Guild") with #general, #alt-text and #gallery, a moderator, two members and a bot.

    ``World.default(guilds=2)`` adds "Second Guild" with #second-general and #second-alt-text, its id chosen so that
    with two shards the first guild is on shard 0 and the second on shard 1. Every user is a member of every guild;
    "mod" is a moderator in each, "keeper" in the first only.
    """

    bot_user: User
    application_id: str
    guild_id: str  # the first guild
    roles: dict[str, Role]
    channels: dict[str, Channel]
    users: dict[str, User]
    messages: dict[str, Message] = field(default_factory=dict)
    guild_names: dict[str, str] = field(default_factory=dict)  # every guild: id -> name (the first one included)
    recommended_shards: int = 1  # what GET /gateway/bot says

    @property
    def guild_ids(self) -> list[str]:
        return list(self.guild_names) or [self.guild_id]

    @classmethod
    def default(cls, guilds: int = 1) -> World:
        if guilds not in (1, 2):
            raise ValueError("the stand-in has one or two guilds")
        guild_id = snowflake() if guilds == 1 else snowflake_on_shard(0, 2)
        everyone = Role(guild_id, "@everyone", EVERYONE_PERMISSIONS)
        moderator = Role(snowflake(), "Moderator",
                         EVERYONE_PERMISSIONS | MANAGE_GUILD | MANAGE_CHANNELS | MANAGE_MESSAGES, 2)
        channel_keeper = Role(snowflake(), "Channel keeper", EVERYONE_PERMISSIONS | MANAGE_CHANNELS, 1)
        app_id = snowflake()
        bot_user = User(app_id, "captionbot", bot=True)
        users = {u.name: u for u in (
            User(snowflake(), "mod", roles=[moderator.id]),
            User(snowflake(), "keeper", roles=[channel_keeper.id]),
            User(snowflake(), "alice"),
            User(snowflake(), "bob"),
            User(snowflake(), "otherbot", bot=True),
        )}
        channels = {c.name: c for c in (Channel(snowflake(), n, guild_id) for n in ("general", "alt-text", "gallery"))}
        roles = {r.id: r for r in (everyone, moderator, channel_keeper)}
        world = cls(bot_user, app_id, guild_id, roles, channels, users, guild_names={guild_id: "Stand-in Guild"})
        if guilds == 2:
            world.add_guild("Second Guild", snowflake_on_shard(1, 2), ("second-general", "second-alt-text"))
            world.recommended_shards = 2
        return world

    def add_guild(self, name: str, guild_id: str, channel_names: tuple[str, ...]) -> str:
        """Another guild with its own @everyone and Moderator roles ("mod" has it) and channels (names unique
        across the world)."""
        self.guild_names[guild_id] = name
        self.roles[guild_id] = Role(guild_id, "@everyone", EVERYONE_PERMISSIONS, guild_id=guild_id)
        moderator = Role(snowflake(), "Moderator", EVERYONE_PERMISSIONS | MANAGE_GUILD | MANAGE_CHANNELS, 2, guild_id)
        self.roles[moderator.id] = moderator
        self.users["mod"].roles.append(moderator.id)
        for n in channel_names:
            if n in self.channels:
                raise ValueError(f"channel name {n!r} is taken")
            self.channels[n] = Channel(snowflake(), n, guild_id)
        return guild_id

    def _in_guild(self, role: Role, guild_id: str) -> bool:
        return (role.guild_id or self.guild_id) == guild_id

    def user(self, name: str) -> User:
        return self.users[name]

    def channel(self, name_or_id: str) -> Channel:
        if name_or_id in self.channels:
            return self.channels[name_or_id]
        for c in self.channels.values():
            if c.id == name_or_id:
                return c
        raise KeyError(name_or_id)

    def roles_of(self, user: User, guild_id: str) -> list[str]:
        """The user's role ids in that guild (besides @everyone)."""
        return [rid for rid in user.roles if self._in_guild(self.roles[rid], guild_id)]

    def permissions_of(self, user: User, guild_id: str | None = None) -> int:
        gid = guild_id or self.guild_id
        perms = self.roles[gid].permissions
        for rid in self.roles_of(user, gid):
            perms |= self.roles[rid].permissions
        return perms

    def bot_permissions_in(self, channel: Channel) -> int:
        return (self.permissions_of(self.bot_user, channel.guild_id) & ~channel.bot_denied) | channel.bot_allowed

    def guild_payload(self, guild_id: str | None = None) -> dict[str, Any]:
        """GUILD_CREATE's guild object (the first guild's by default)."""
        gid = guild_id or self.guild_id
        members = [u.member_payload(roles=self.roles_of(u, gid)) for u in [self.bot_user, *self.users.values()]]
        return {
            "id": gid, "name": self.guild_names.get(gid, "Stand-in Guild"), "owner_id": self.users["mod"].id,
            "unavailable": False, "large": False, "member_count": len(members), "joined_at": now_iso(), "features": [],
            "roles": [r.payload() for r in self.roles.values() if self._in_guild(r, gid)],
            "channels": [c.payload(self.bot_user.id) for c in self.channels.values() if c.guild_id == gid],
            "members": members, "emojis": [], "stickers": [], "threads": [], "presences": [], "voice_states": [],
            "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
            "preferred_locale": "en-US", "premium_tier": 0, "system_channel_flags": 0,
        }
