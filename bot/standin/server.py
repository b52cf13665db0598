"""The stand-in server: gateway + REST + CDN + the local page on one aiohttp app, and the actions a user takes.

    standin = StandIn(); await standin.start()          # port 0 = any free port
    point_discord_at(standin.base_url)                  # discord.py now talks to the stand-in
    await standin.post_message("alt-text", "alice", files=[standin.image("dog.jpg", data)])
    await standin.wait_for(lambda sent: len(sent) >= 1)
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yarl
from aiohttp import web
from captionbot.bot.standin.components import NotPossible, find_button, submit_components
from captionbot.bot.standin.faults import Faults
from captionbot.bot.standin.gateway import Gateway
from captionbot.bot.standin.page import Page
from captionbot.bot.standin.record import Sent
from captionbot.bot.standin.rest import InteractionState, Rest
from captionbot.bot.standin.world import EPHEMERAL, Attachment, Channel, Message, User, World, snowflake

log = logging.getLogger(__name__)
DEFAULT_TOKEN = "standin-token"


def point_discord_at(base_url: str) -> None:
    """Configure discord.py (REST, follow-ups and gateway) to use a stand-in at ``base_url`` (http://host:port)."""
    import discord.gateway
    import discord.http

    discord.http.Route.BASE = base_url.rstrip("/") + "/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(base_url.replace("http", "ws", 1).rstrip("/")
                                                                + "/gateway")


@dataclass
class FileToPost:
    """A file a user attaches; ``url`` / ``declared_size`` let a test craft odd attachments."""

    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None
    url: str | None = None
    declared_size: int | None = None


class StandIn:
    """A local Discord: one guild (two with ``guilds=2``, for two shards), its members, channels and messages, the
    bot's connections, and a record."""

    def __init__(self, token: str = DEFAULT_TOKEN, host: str = "127.0.0.1", port: int = 0,
                 heartbeat_ms: int = 41_250, world: World | None = None, public_url: str | None = None,
                 guilds: int = 1) -> None:
        """``public_url``: how the bot reaches this server (its CDN links and ``resume_gateway_url`` use it) when
        that is not ``http://host:port``, e.g. ``http://standin:8765`` behind a container network."""
        self.token = token
        self.host = host
        self.port = port
        self._public_url = public_url.rstrip("/") if public_url else None
        self.world = world or World.default(guilds)
        self.faults = Faults()
        self.sent: list[Sent] = []
        self._changed = asyncio.Condition()
        self.gateway = Gateway(self.world, token, self.gateway_url, heartbeat_ms)
        self.rest = Rest(self.world, self.gateway, self.faults, token, self.gateway_url, self._record)
        self.page = Page(self)
        self._runner: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.rest.middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        self.rest.add_routes(app)
        self.page.add_routes(app)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the port the OS chose when asked for 0
        log.info("stand-in listening on %s", self.base_url)

    async def stop(self) -> None:
        await self.gateway.disconnect(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def mention(self) -> str:
        """How a user mentions the bot in a message's content."""
        return f"<@{self.world.bot_user.id}>"

    @property
    def base_url(self) -> str:
        return self._public_url or f"http://{self.host}:{self.port}"

    def gateway_url(self) -> str:
        return self.base_url.replace("http", "ws", 1) + "/gateway"

    # -- the record ------------------------------------------------------------------------------------------

    async def _record(self, sent: Sent) -> None:
        async with self._changed:
            self.sent.append(sent)
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[list[Sent]], bool], timeout: float = 15.0) -> list[Sent]:
        """Wait until ``predicate(self.sent)`` holds; returns the record. TimeoutError names what was sent."""
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self.sent)), timeout)
        except TimeoutError:
            raise TimeoutError(f"stand-in: condition not met in {timeout}s; sent: {self.summary()}") from None
        return self.sent

    def summary(self) -> list[str]:
        return [f"{s.kind} {s.status} {s.content[:60]!r}" for s in self.sent]

    def replies_to(self, message: Message) -> list[Sent]:
        """Messages the bot created that reply to ``message``."""
        return [s for s in self.sent if s.ok and s.kind == "message" and s.reply_to == message.id]

    def answers_to(self, interaction_id: str) -> list[Sent]:
        """Messages that answer an interaction (initial message, follow-ups, edits, updates of the message whose
        button was pressed), in order."""
        kinds = ("interaction_message", "followup", "edit", "update")
        return [s for s in self.sent if s.ok and s.interaction_id == interaction_id and s.kind in kinds]

    def messages_in(self, channel: str) -> list[Message]:
        cid = self.world.channel(channel).id
        return [m for m in self.world.messages.values() if m.channel_id == cid]

    # -- what users do ---------------------------------------------------------------------------------------

    def _user(self, user: str | User) -> User:
        return user if isinstance(user, User) else self.world.user(user)

    def _channel(self, channel: str | Channel) -> Channel:
        return channel if isinstance(channel, Channel) else self.world.channel(channel)

    def _attach(self, channel: Channel, f: FileToPost) -> Attachment:
        ctype = f.content_type or mimetypes.guess_type(f.filename)[0]
        att = self.rest.new_attachment(channel.id, f.filename, f.data, ctype)
        att.description, att.declared_size = f.description, f.declared_size
        if f.url:
            att.url = f.url
        return att

    async def post_message(self, channel: str | Channel, author: str | User, content: str = "",
                           files: Sequence[FileToPost] = (), reply_to: Message | None = None) -> Message:
        """A user posts a message (with files, or as a reply to ``reply_to``) in a channel; the bot gets
        MESSAGE_CREATE as its intents allow. ``self.mention`` in ``content`` mentions the bot."""
        ch, user = self._channel(channel), self._user(author)
        message = Message(snowflake(), ch.id, ch.guild_id, user, content=content,
                          attachments=[self._attach(ch, f) for f in files],
                          reference_id=reply_to.id if reply_to else None)
        self.world.messages[message.id] = message
        await self.gateway.dispatch_message(message)
        return message

    async def set_bot_permissions(self, channel: str | Channel, *, allow: int = 0, deny: int = 0) -> None:
        """A moderator edits the bot's permission overwrite in a channel (e.g. grants Manage Webhooks and Manage
        Messages for repost mode); the bot gets CHANNEL_UPDATE, as on Discord."""
        ch = self._channel(channel)
        ch.bot_allowed, ch.bot_denied = allow, deny
        await self.gateway.dispatch("CHANNEL_UPDATE", ch.payload(self.world.bot_user.id))

    def webhook_posts_in(self, channel: str) -> list[Message]:
        """Messages posted through webhooks in a channel (repost mode's reposts), oldest first."""
        return [m for m in self.messages_in(channel) if m.webhook_id]

    async def delete_message(self, message: Message) -> None:
        """A user deletes their message; the bot gets MESSAGE_DELETE."""
        self.world.messages.pop(message.id, None)
        await self.gateway.dispatch_delete(message)

    async def slash(self, channel: str | Channel, user: str | User, command: str, /,
                    **options: Any) -> InteractionState:
        """A user runs a slash command, e.g. ``slash("general", "mod", "alttext on", channel=ch)``.

        Option types follow the values: FileToPost -> attachment, Channel -> channel, bool, int, str.
        """
        ch, who = self._channel(channel), self._user(user)
        name, *path = command.split()
        resolved: dict[str, dict[str, Any]] = {}
        opts = [self._option(ch, who, k, v, resolved) for k, v in options.items() if v is not None]
        for sub in reversed(path):  # "captionbot stats" -> option of type 1 (subcommand) wrapping the options
            opts = [{"type": 1, "name": sub, "options": opts}]
        data = {"id": self._command_id(name), "name": name, "type": 1, "options": opts, "resolved": resolved}
        return await self._interact(ch, who, data)

    async def context_menu(self, channel: str | Channel, user: str | User, name: str,
                           message: Message) -> InteractionState:
        """A user picks a message context-menu command (Apps -> ``name``) on ``message``."""
        ch, who = self._channel(channel), self._user(user)
        data = {"id": self._command_id(name), "name": name, "type": 3, "target_id": message.id,
                "resolved": {"messages": {message.id: message.payload()}}}
        return await self._interact(ch, who, data)

    async def press_button(self, channel: str | Channel, user: str | User, message: Message,
                           custom_id: str) -> InteractionState:
        """A user presses the button ``custom_id`` on ``message`` (as it is now): the bot gets INTERACTION_CREATE of
        type 3 (MESSAGE_COMPONENT) carrying the message. :class:`NotPossible` if the message is gone or has no such
        enabled button, since no user could press it."""
        ch, who = self._channel(channel), self._user(user)
        current = self.world.messages.get(message.id)
        if current is None or current.channel_id != ch.id:
            raise NotPossible(f"message {message.id} is not in #{ch.name}")
        if current.flags & EPHEMERAL and current.interaction_id is not None:
            asker = next((s.user for s in self.rest.interactions.values() if s.id == current.interaction_id), None)
            if asker is not None and asker.id != who.id:
                raise NotPossible("an ephemeral message is seen only by the person it answers")
        find_button(current.components, custom_id)
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(ch, who, data, kind=3, message=current)

    async def submit_modal(self, channel: str | Channel, user: str | User, custom_id: str,
                           values: dict[str, str]) -> InteractionState:
        """A user submits the modal ``custom_id`` the bot showed them, with ``values`` (text input custom_id ->
        text; inputs left out keep their prefilled value): INTERACTION_CREATE of type 5 (MODAL_SUBMIT), carrying
        the message whose button opened it. :class:`NotPossible` for a modal not open for this user or values
        its inputs refuse."""
        ch, who = self._channel(channel), self._user(user)
        modal = self.rest.modals.get(who.id, custom_id)
        data = {"custom_id": custom_id, "components": submit_components(modal, values)}
        self.rest.modals.close(modal)  # a submitted modal closes (one the client refuses stays open)
        message = self.world.messages.get(modal.message_id) if modal.message_id else None
        return await self._interact(ch, who, data, kind=5, message=message)

    def open_modals(self, user: str | User) -> list[str]:
        """The custom_ids of the modals open on ``user``'s screen."""
        return [m.custom_id for m in self.rest.modals.open_for(self._user(user).id)]

    def _option(self, ch: Channel, who: User, name: str, value: Any,
                resolved: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if isinstance(value, FileToPost):
            att = self._attach(ch, value)
            resolved.setdefault("attachments", {})[att.id] = att.payload()
            return {"type": 11, "name": name, "value": att.id}
        if isinstance(value, Channel):
            # the asker's permissions there, as Discord resolves them
            perms = str(self.world.permissions_of(who, ch.guild_id))
            resolved.setdefault("channels", {})[value.id] = {**value.payload(self.world.bot_user.id),
                                                             "permissions": perms}
            return {"type": 7, "name": name, "value": value.id}
        kind = 5 if isinstance(value, bool) else 4 if isinstance(value, int) else 3
        return {"type": kind, "name": name, "value": value}

    def _command_id(self, name: str) -> str:
        for cmds in self.rest.commands.values():
            for c in cmds:
                if c["name"] == name:
                    return c["id"]
        return snowflake()

    async def _interact(self, ch: Channel, who: User, data: dict[str, Any], kind: int = 2,
                        message: Message | None = None) -> InteractionState:
        state = InteractionState(snowflake(), "tok-" + snowflake(), ch.id, who, kind=kind,
                                 message_id=message.id if message else None)
        self.rest.interactions[state.token] = state
        w = self.world
        payload: dict[str, Any] = {
            "id": state.id, "application_id": w.application_id, "type": kind, "data": data, "guild_id": ch.guild_id,
            "channel_id": ch.id, "channel": ch.payload(w.bot_user.id),
            "member": who.member_payload(permissions=w.permissions_of(who, ch.guild_id),
                                         roles=w.roles_of(who, ch.guild_id)),
            "token": state.token, "version": 1,
            "app_permissions": str(w.bot_permissions_in(ch)), "locale": "en-US", "guild_locale": "en-US",
            "attachment_size_limit": 10 * 1024 * 1024, "entitlements": [], "context": 0,
            "authorizing_integration_owners": {"0": ch.guild_id},
        }
        if message is not None:
            payload["message"] = message.payload()
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        return state

    # -- faults ----------------------------------------------------------------------------------------------

    async def disconnect_bot(self) -> int:
        """Drop the bot's gateway connection (it should RESUME and get the events it missed)."""
        return await self.gateway.disconnect(code=4000)
