"""The stand-in's REST API (the part of ``/api/v10`` the bot uses) and its CDN.

Responses are ``Content-Type: application/json`` exactly: discord.py reads any other value (even with
``; charset=utf-8``) as text and fails at login. Every write is recorded as a :class:`~bot.standin.record.Sent`.
Interaction rules follow Discord: a deferred interaction's first follow-up fills the deferred ("thinking")
message and takes its visibility; later follow-ups are new messages with their own ``ephemeral`` flag.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from captionbot.bot.standin.components import InvalidComponents, Modals, check_message_components, parse_modal
from captionbot.bot.standin.faults import Faults
from captionbot.bot.standin.gateway import Gateway
from captionbot.bot.standin.record import Sent, SentFile
from captionbot.bot.standin.webhooks import ChannelWebhooks
from captionbot.bot.standin.world import (
    ATTACH_FILES,
    EPHEMERAL,
    MANAGE_MESSAGES,
    SEND_MESSAGES,
    Attachment,
    Message,
    User,
    World,
    now_iso,
    snowflake,
)

log = logging.getLogger(__name__)
API = "/api/v10"
CDN_CHUNK = 16 * 1024


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"})


def error(status: int, message: str, code: int = 0) -> web.Response:
    return json_response({"message": message, "code": code}, status)


def invalid_form(exc: InvalidComponents) -> web.Response:
    """Discord's answer to a payload that breaks a rule: 400, code 50035, with the rule in ``errors``."""
    return json_response({"message": "Invalid Form Body", "code": 50035, "errors": {"_errors": [
        {"code": "COMPONENT_INVALID", "message": str(exc)}]}}, 400)


# Interaction callback types each interaction type may answer with (Discord's rules): 4 CHANNEL_MESSAGE_WITH_SOURCE,
# 5 DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE, 6 DEFERRED_UPDATE_MESSAGE, 7 UPDATE_MESSAGE, 9 MODAL. A modal submit may
# update a message (6, 7) only when a button on that message opened the modal; a modal never answers a modal.
CALLBACKS_FOR = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 5: {4, 5, 6, 7}}


@dataclass
class InteractionState:
    id: str
    token: str
    channel_id: str
    user: User
    deferred: bool = False
    ephemeral: bool = False
    original_id: str | None = None  # the response message, once there is one
    original_filled: bool = False
    original_deleted: bool = False
    kind: int = 2  # 2 application command, 3 message component (a button), 5 modal submit
    message_id: str | None = None  # types 3 and 5: the message whose button was pressed (or opened the modal)
    responded: bool = False  # any callback taken (a modal, an update, ...): a second one is refused


class Rest:
    """Routes, state for interactions and uploaded files, and the record of what the bot sent."""

    def __init__(self, world: World, gateway: Gateway, faults: Faults, token: str,
                 public_url: Callable[[], str], on_sent: Callable[[Sent], Awaitable[None]]) -> None:
        self.world = world
        self.gateway = gateway
        self.faults = faults
        self.token = token
        self.public_url = public_url
        self.on_sent = on_sent
        self.interactions: dict[str, InteractionState] = {}
        self.attachments: dict[str, Attachment] = {}
        self.commands: dict[str, list[dict[str, Any]]] = {}  # "global" or guild id -> synced commands
        self.modals = Modals()  # modals the bot showed users, until submitted
        self._echoes: set[asyncio.Task[None]] = set()  # MESSAGE_CREATE for the bot's own messages, in flight
        self.webhooks = ChannelWebhooks(self)  # channel webhooks (webhooks.py); shares /webhooks/{id}/{token}

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get(API + "/users/@me", self.get_me)
        r.add_get(API + "/oauth2/applications/@me", self.get_application)
        r.add_get(API + "/gateway", self.get_gateway)
        r.add_get(API + "/gateway/bot", self.get_gateway)
        r.add_put(API + "/applications/{app_id}/commands", self.put_commands)
        r.add_put(API + "/applications/{app_id}/guilds/{guild_id}/commands", self.put_commands)
        r.add_get(API + "/applications/{app_id}/commands", self.get_commands)
        r.add_post(API + "/channels/{channel_id}/messages", self.create_message)
        r.add_get(API + "/channels/{channel_id}/messages/{message_id}", self.get_message)
        r.add_patch(API + "/channels/{channel_id}/messages/{message_id}", self.edit_message)
        r.add_delete(API + "/channels/{channel_id}/messages/{message_id}", self.delete_message)
        r.add_post(API + "/interactions/{interaction_id}/{token}/callback", self.interaction_callback)
        r.add_post(API + "/webhooks/{app_id}/{token}", self.followup)
        r.add_patch(API + "/webhooks/{app_id}/{token}/messages/{message_id}", self.edit_webhook_message)
        r.add_delete(API + "/webhooks/{app_id}/{token}/messages/{message_id}", self.delete_webhook_message)
        self.webhooks.add_routes(app)
        r.add_get("/cdn/attachments/{channel_id}/{attachment_id}/{filename}", self.cdn)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Bot-token check for bot routes, then injected faults, then the handler."""
        if not request.path.startswith(API):
            return await handler(request)
        resource = request.match_info.route.resource
        route = request.method + " " + (resource.canonical if resource else request.path).removeprefix(API)
        is_webhook = route.split(" ", 1)[1].startswith(("/interactions/", "/webhooks/"))
        if not is_webhook and request.headers.get("Authorization") != f"Bot {self.token}":
            return error(401, "401: Unauthorized")
        fault = self.faults.take(route)
        if fault is not None:
            await self.on_sent(Sent(kind="fault", route=route, status=fault.status))
            return fault.response()
        return await handler(request)

    # -- identity, gateway, commands -------------------------------------------------------------------------

    async def get_me(self, request: web.Request) -> web.Response:
        return json_response({**self.world.bot_user.payload(), "verified": True, "mfa_enabled": False, "flags": 0})

    async def get_application(self, request: web.Request) -> web.Response:
        owner = self.world.users["mod"].payload()
        return json_response({
            "id": self.world.application_id, "name": "captionbot", "description": "", "icon": None,
            "bot_public": True, "bot_require_code_grant": False, "owner": owner, "verify_key": "0" * 64,
            "flags": 0, "team": None, "summary": "", "interactions_endpoint_url": None,
        })

    async def get_gateway(self, request: web.Request) -> web.Response:
        url = self.public_url()
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return json_response({"url": url, "shards": self.world.recommended_shards, "session_start_limit": limit})

    async def put_commands(self, request: web.Request) -> web.Response:
        key = request.match_info.get("guild_id", "global")
        synced = []
        scope = {"guild_id": key} if key != "global" else {}
        for cmd in await request.json():  # Discord fills in what the bot left out, and adds ids and a version
            synced.append({"description": "", "options": [], "nsfw": False, **cmd, **scope, "id": snowflake(),
                           "application_id": self.world.application_id, "version": snowflake()})
        self.commands[key] = synced
        await self.on_sent(Sent(kind="commands", route="PUT commands", status=200, payload={"commands": synced}))
        return json_response(synced)

    async def get_commands(self, request: web.Request) -> web.Response:
        return json_response(self.commands.get("global", []))

    # -- messages --------------------------------------------------------------------------------------------

    async def _read_body(self, request: web.Request) -> tuple[dict[str, Any], list[SentFile]]:
        """JSON body, or multipart ``payload_json`` + ``files[n]`` as discord.py sends uploads."""
        if request.content_type == "multipart/form-data":
            form = await request.post()
            raw = form.get("payload_json") or "{}"  # a part with a content type (as Discord allows) is a "file"
            if isinstance(raw, web.FileField):
                raw = raw.file.read()
            payload = json.loads(raw.decode() if isinstance(raw, bytes | bytearray) else str(raw))
            files = []
            for name, value in form.items():
                if name.startswith("files[") and isinstance(value, web.FileField):
                    files.append(SentFile(value.filename, value.file.read(), value.content_type))
            return payload, files
        return (await request.json() if request.can_read_body else {}), []

    def _store_files(self, channel_id: str, files: list[SentFile], payload: dict[str, Any]) -> list[Attachment]:
        descriptions = [a.get("description") for a in payload.get("attachments", [])]
        out = []
        for i, f in enumerate(files):
            att = self.new_attachment(channel_id, f.filename, f.data, f.content_type)
            att.description = descriptions[i] if i < len(descriptions) else None
            out.append(att)
        return out

    def new_attachment(self, channel_id: str, filename: str, data: bytes, content_type: str | None) -> Attachment:
        """Store a file on the CDN and return its attachment (URL on the stand-in's own CDN). Like Discord, the
        attachment's content type comes from the file name when the upload gave none or a generic one (discord.py
        uploads every file as ``application/octet-stream``)."""
        if content_type in (None, "", "application/octet-stream"):
            content_type = mimetypes.guess_type(filename)[0] or content_type
        aid = snowflake()
        att = Attachment(aid, filename, data, content_type,
                         url=f"{self.public_http()}/cdn/attachments/{channel_id}/{aid}/{filename}")
        self.attachments[aid] = att
        return att

    def public_http(self) -> str:
        return self.public_url().replace("ws", "http", 1).removesuffix("/gateway")

    async def create_message(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["channel_id"]
        payload, files = await self._read_body(request)
        route = "POST /channels/{channel_id}/messages"
        try:
            channel = self.world.channel(channel_id)
        except KeyError:
            await self.on_sent(Sent("message", route, 404, payload, files, channel_id))
            return error(404, "Unknown Channel", 10003)
        allowed = self.world.bot_permissions_in(channel)
        if not allowed & SEND_MESSAGES or (files and not allowed & ATTACH_FILES):
            await self.on_sent(Sent("message", route, 403, payload, files, channel_id))
            return error(403, "Missing Permissions", 50013)
        try:
            components = check_message_components(payload.get("components"))
        except InvalidComponents as exc:
            await self.on_sent(Sent("message", route, 400, payload, files, channel_id))
            return invalid_form(exc)
        ref = (payload.get("message_reference") or {}).get("message_id")
        stored = self._store_files(channel_id, files, payload)
        message = Message(snowflake(), channel_id, channel.guild_id, self.world.bot_user,
                          content=payload.get("content") or "", attachments=stored,
                          flags=int(payload.get("flags") or 0), reference_id=str(ref) if ref else None,
                          allowed_mentions=payload.get("allowed_mentions"), embeds=payload.get("embeds") or [],
                          components=components)
        self.world.messages[message.id] = message
        await self.on_sent(Sent("message", route, 200, payload, files, channel_id, message))
        echo = asyncio.get_running_loop().create_task(self.gateway.dispatch_message(message))  # after the response
        self._echoes.add(echo)
        echo.add_done_callback(self._echoes.discard)
        return json_response(message.payload())

    async def get_message(self, request: web.Request) -> web.Response:
        message = self.world.messages.get(request.match_info["message_id"])
        if message is None:
            return error(404, "Unknown Message", 10008)
        return json_response(message.payload())

    async def delete_message(self, request: web.Request) -> web.Response:
        """The bot deletes a message: its own needs no permission, anyone else's (a webhook's included) needs
        Manage Messages in that channel. Discord then sends MESSAGE_DELETE."""
        route = "DELETE /channels/{channel_id}/messages/{message_id}"
        channel_id, message_id = request.match_info["channel_id"], request.match_info["message_id"]
        message = self.world.messages.get(message_id)
        if message is None or message.channel_id != channel_id:
            await self.on_sent(Sent("delete_message", route, 404, {"id": message_id}, channel_id=channel_id))
            return error(404, "Unknown Message", 10008)
        own = message.author.id == self.world.bot_user.id and not message.webhook_id
        if not own and not self.world.bot_permissions_in(self.world.channel(channel_id)) & MANAGE_MESSAGES:
            await self.on_sent(Sent("delete_message", route, 403, {"id": message_id}, channel_id=channel_id))
            return error(403, "Missing Permissions", 50013)
        del self.world.messages[message_id]
        await self.on_sent(Sent("delete_message", route, 204, {"id": message_id}, channel_id=channel_id,
                                message=message))
        echo = asyncio.get_running_loop().create_task(self.gateway.dispatch_delete(message))  # after the response
        self._echoes.add(echo)
        echo.add_done_callback(self._echoes.discard)
        return web.Response(status=204)

    # -- interactions ----------------------------------------------------------------------------------------

    async def interaction_callback(self, request: web.Request) -> web.Response:
        state = self.interactions.get(request.match_info["token"])
        route = "POST /interactions/{interaction_id}/{token}/callback"
        if state is None or state.id != request.match_info["interaction_id"]:
            return error(404, "Unknown interaction", 10062)
        body, files = await self._read_body(request)
        if state.deferred or state.original_id or state.responded:
            await self.on_sent(Sent("interaction_message", route, 400, body, files, state.channel_id,
                                    interaction_id=state.id))
            return error(400, "Interaction has already been acknowledged.", 40060)
        kind, data = int(body.get("type", 0)), body.get("data") or {}
        allowed = CALLBACKS_FOR.get(state.kind, set()) - (set() if state.message_id else {6, 7})
        if kind not in allowed:
            await self.on_sent(Sent("interaction_other", route, 400, body, files, state.channel_id,
                                    interaction_id=state.id))
            return error(400, f"Interaction callback type {kind} is not valid for interaction type {state.kind}",
                         50035)
        if kind in (6, 7, 9):
            return await self._component_callback(state, kind, data, body, files)
        state.responded = True
        flags = int(data.get("flags") or 0)
        response: dict[str, Any] = {"interaction": {"id": state.id, "type": state.kind}}
        if kind == 5:  # deferred channel message ("is thinking...")
            state.deferred, state.ephemeral = True, bool(flags & EPHEMERAL)
            state.original_id = snowflake()
            response["interaction"].update(response_message_id=state.original_id, response_message_loading=True,
                                           response_message_ephemeral=state.ephemeral)
            await self.on_sent(Sent("defer", route, 200, body, [], state.channel_id, interaction_id=state.id,
                                    ephemeral=state.ephemeral))
        elif kind == 4:  # a message right away
            try:
                message = self._interaction_message(state, data, files, flags)
            except InvalidComponents as exc:
                state.responded = False
                await self.on_sent(Sent("interaction_message", route, 400, data, files, state.channel_id,
                                        interaction_id=state.id))
                return invalid_form(exc)
            state.original_id, state.original_filled = message.id, True
            response["interaction"].update(response_message_id=message.id,
                                           response_message_ephemeral=bool(flags & EPHEMERAL))
            response["resource"] = {"type": 4, "message": message.payload()}
            await self.on_sent(Sent("interaction_message", route, 200, data, files, state.channel_id, message,
                                    state.id, bool(flags & EPHEMERAL)))
        return json_response(response)

    async def _component_callback(self, state: InteractionState, kind: int, data: dict[str, Any],
                                  body: dict[str, Any], files: list[SentFile]) -> web.Response:
        """Callback types 6 (deferred update), 7 (update the message the button is on) and 9 (show a modal)."""
        route = "POST /interactions/{interaction_id}/{token}/callback"
        response: dict[str, Any] = {"interaction": {"id": state.id, "type": state.kind}}
        if kind == 9:
            try:
                modal = parse_modal(data, state.user.id, state.channel_id, state.message_id)
            except InvalidComponents as exc:
                await self.on_sent(Sent("modal", route, 400, data, [], state.channel_id, interaction_id=state.id))
                return invalid_form(exc)
            state.responded = True
            self.modals.show(modal)
            await self.on_sent(Sent("modal", route, 200, data, [], state.channel_id, interaction_id=state.id))
            return json_response(response)
        message = self.world.messages.get(state.message_id or "")
        if message is None:
            await self.on_sent(Sent("update", route, 404, data, files, state.channel_id, interaction_id=state.id))
            return error(404, "Unknown Message", 10008)
        if kind == 6:  # "deferred update": nothing visible; the message may be edited later through @original
            state.responded, state.original_id, state.original_filled = True, message.id, True
            await self.on_sent(Sent("deferred_update", route, 200, body, [], state.channel_id, message, state.id))
            return json_response(response)
        try:
            message = await self.apply_edit(message, data, files)
        except InvalidComponents as exc:
            await self.on_sent(Sent("update", route, 400, data, files, state.channel_id, interaction_id=state.id))
            return invalid_form(exc)
        state.responded, state.original_id, state.original_filled = True, message.id, True
        response["interaction"]["response_message_id"] = message.id
        response["resource"] = {"type": 7, "message": message.payload()}
        await self.on_sent(Sent("update", route, 200, data, files, state.channel_id, message, state.id,
                                bool(message.flags & EPHEMERAL)))
        return json_response(response)

    async def apply_edit(self, message: Message, data: dict[str, Any], files: list[SentFile]) -> Message:
        """Edit ``message`` as Discord does: fields present replace, absent ones stay; ``attachments`` lists the old
        attachments to keep (by id) and the new files' descriptions. The world holds the edited copy (the record
        keeps what was sent before); MESSAGE_UPDATE follows."""
        message = dataclasses.replace(message, edited_timestamp=now_iso())
        if "components" in data:
            message.components = check_message_components(data["components"])
        if "content" in data:
            message.content = data.get("content") or ""
        if "attachments" in data or files:
            keep = {str(a.get("id")) for a in data.get("attachments") or [] if isinstance(a, dict)}
            new = [a for a in data.get("attachments") or [] if isinstance(a, dict)
                   and str(a.get("id")) not in {x.id for x in message.attachments}]
            message.attachments = [a for a in message.attachments if a.id in keep] + \
                self._store_files(message.channel_id, files, {"attachments": new})
        if "allowed_mentions" in data:
            message.allowed_mentions = data["allowed_mentions"]
        self.world.messages[message.id] = message
        update = asyncio.get_running_loop().create_task(self.gateway.dispatch_update(message))
        self._echoes.add(update)
        update.add_done_callback(self._echoes.discard)
        return message

    async def edit_message(self, request: web.Request) -> web.Response:
        """The bot edits a message in a channel (only its own, as on Discord)."""
        route = "PATCH /channels/{channel_id}/messages/{message_id}"
        channel_id, message_id = request.match_info["channel_id"], request.match_info["message_id"]
        data, files = await self._read_body(request)
        message = self.world.messages.get(message_id)
        if message is None or message.channel_id != channel_id:
            await self.on_sent(Sent("edit_message", route, 404, data, files, channel_id))
            return error(404, "Unknown Message", 10008)
        if message.author.id != self.world.bot_user.id:
            await self.on_sent(Sent("edit_message", route, 403, data, files, channel_id))
            return error(403, "Cannot edit a message authored by another user", 50005)
        try:
            message = await self.apply_edit(message, data, files)
        except InvalidComponents as exc:
            await self.on_sent(Sent("edit_message", route, 400, data, files, channel_id))
            return invalid_form(exc)
        await self.on_sent(Sent("edit_message", route, 200, data, files, channel_id, message))
        return json_response(message.payload())

    def _interaction_message(self, state: InteractionState, data: dict[str, Any], files: list[SentFile],
                             flags: int, message_id: str | None = None) -> Message:
        components = check_message_components(data.get("components"))  # InvalidComponents: the caller answers 400
        stored = self._store_files(state.channel_id, files, data)
        guild_id = self.world.channel(state.channel_id).guild_id
        message = Message(message_id or snowflake(), state.channel_id, guild_id, self.world.bot_user,
                          content=data.get("content") or "", attachments=stored, flags=flags,
                          interaction_id=state.id, allowed_mentions=data.get("allowed_mentions"),
                          embeds=data.get("embeds") or [], components=components)
        self.world.messages[message.id] = message
        return message

    async def followup(self, request: web.Request) -> web.Response:
        state = self.interactions.get(request.match_info["token"])
        route = "POST /webhooks/{app_id}/{token}"
        if state is None:  # not an interaction's token: a channel webhook's
            return await self.webhooks.execute(request)
        data, files = await self._read_body(request)
        flags = int(data.get("flags") or 0)
        fills_original = state.deferred and not state.original_filled and not state.original_deleted
        if fills_original:  # the "thinking" message becomes this one, with the defer's visibility
            flags = (flags & ~EPHEMERAL) | (EPHEMERAL if state.ephemeral else 0)
        try:
            message = self._interaction_message(state, data, files, flags,
                                                state.original_id if fills_original else None)
        except InvalidComponents as exc:
            await self.on_sent(Sent("followup", route, 400, data, files, state.channel_id, interaction_id=state.id))
            return invalid_form(exc)
        if fills_original:
            state.original_filled = True
        await self.on_sent(Sent("followup", route, 200, data, files, state.channel_id, message, state.id,
                                bool(flags & EPHEMERAL)))
        return json_response(message.payload())

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        state = self.interactions.get(request.match_info["token"])
        if state is None:
            return await self.webhooks.edit_message(request)
        data, files = await self._read_body(request)
        asked = request.match_info["message_id"]
        mid = state.original_id if asked == "@original" else asked
        route = "PATCH /webhooks/{app_id}/{token}/messages/{message_id}"
        if state.message_id is not None and mid == state.message_id:  # the message whose button was pressed
            message = self.world.messages.get(mid)
            if message is None:
                return error(404, "Unknown Message", 10008)
            try:
                message = await self.apply_edit(message, data, files)
            except InvalidComponents as exc:
                await self.on_sent(Sent("edit", route, 400, data, files, state.channel_id, interaction_id=state.id))
                return invalid_form(exc)
            await self.on_sent(Sent("edit", route, 200, data, files, state.channel_id, message, state.id))
            return json_response(message.payload())
        flags = EPHEMERAL if state.ephemeral else 0
        try:
            message = self._interaction_message(state, data, files, flags, mid)
        except InvalidComponents as exc:
            await self.on_sent(Sent("edit", route, 400, data, files, state.channel_id, interaction_id=state.id))
            return invalid_form(exc)
        state.original_filled = True
        await self.on_sent(Sent("edit", route, 200, data, files, state.channel_id, message, state.id, state.ephemeral))
        return json_response(message.payload())

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        state = self.interactions.get(request.match_info["token"])
        if state is None:
            return await self.webhooks.delete_message(request)
        mid = request.match_info["message_id"]
        if mid == "@original":
            state.original_deleted = True
            mid = state.original_id or ""
        self.world.messages.pop(mid, None)
        await self.on_sent(Sent("delete", "DELETE /webhooks/{app_id}/{token}/messages/{message_id}", 204,
                                channel_id=state.channel_id, interaction_id=state.id))
        return web.Response(status=204)

    # -- CDN -------------------------------------------------------------------------------------------------

    async def cdn(self, request: web.Request) -> web.StreamResponse:
        att = self.attachments.get(request.match_info["attachment_id"])
        if att is None:
            return web.Response(status=404, text="not found")
        headers = {"Content-Type": att.content_type or "application/octet-stream"}
        delay = self.faults.cdn_chunk_delay_s
        if delay <= 0:
            return web.Response(body=att.data, headers=headers)
        resp = web.StreamResponse(headers=headers)
        resp.content_length = len(att.data)
        await resp.prepare(request)
        try:
            for i in range(0, len(att.data), CDN_CHUNK):
                await resp.write(att.data[i:i + CDN_CHUNK])
                await asyncio.sleep(delay)
            await resp.write_eof()
        except ConnectionError:
            log.info("cdn: client gave up on %s (slow-download fault)", att.filename)
        return resp
