"""Channel webhooks on the stand-in, as Discord's API has them: create and list a channel's webhooks (Manage
Webhooks), execute one (JSON or multipart ``payload_json`` + ``files[n]``, ``attachments[].description``,
``username``, ``avatar_url``, ``?wait=true``), and edit, fetch or delete a message it posted.

Discord routes an incoming webhook and an interaction's follow-ups through the same ``/webhooks/{id}/{token}``
paths; :class:`~bot.standin.rest.Rest` owns those routes and hands a token that is no interaction's to
:class:`ChannelWebhooks`. Fault keys are therefore the interaction ones, e.g. ``"POST /webhooks/{app_id}/{token}"``.

Components (buttons) follow Discord's rule: they are read only with ``?with_components=true`` (otherwise ignored,
as Discord does), and interactive ones (anything but link buttons) only from a webhook an application owns (one a
bot created: ``application_id`` set); a webhook a member made (:meth:`ChannelWebhooks.add_members_webhook`) may
send link buttons only, else 400 (50035). Pressing a button on a webhook's message sends the interaction to the
application, as with the bot's own messages.

Validation follows Discord's answers: no Manage Webhooks -> 403 (50013); an unknown webhook -> 404 (10015), a
wrong token -> 401 (50027); an empty message -> 400 (50006); a name or username containing "clyde" or
"discord" (or being "everyone" or "here"), content over 2,000 characters or a description over 1,024 -> 400
(50035, Invalid Form Body).
Every write is recorded: ``webhook_create``, ``webhook_message``, ``webhook_edit``, ``webhook_delete``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from captionbot.bot.standin.components import LINK_STYLE, InvalidComponents, buttons, check_message_components
from captionbot.bot.standin.record import Sent, SentFile
from captionbot.bot.standin.world import MANAGE_WEBHOOKS, Message, User, snowflake

if TYPE_CHECKING:
    from captionbot.bot.standin.rest import Rest

log = logging.getLogger(__name__)
API = "/api/v10"
MAX_CONTENT = 2000
MAX_DESCRIPTION = 1024
MAX_NAME = 80
MAX_PER_CHANNEL = 15
FORBIDDEN_IN_NAMES = ("clyde", "discord")
SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS = 1 << 2, 1 << 12  # the only flags a webhook message may set


@dataclass
class Webhook:
    """An incoming webhook of one channel, created by ``user`` (the bot)."""

    id: str
    token: str
    channel_id: str
    guild_id: str
    name: str
    user: User
    application_id: str | None

    def payload(self, *, with_token: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "type": 1, "guild_id": self.guild_id, "channel_id": self.channel_id,
                             "name": self.name, "avatar": None, "user": self.user.payload(),
                             "application_id": self.application_id}
        if with_token:
            d["token"] = self.token
        return d


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"})


def error(status: int, message: str, code: int = 0) -> web.Response:
    return json_response({"message": message, "code": code}, status)


def invalid_form(field: str, message: str) -> web.Response:
    return json_response({"message": "Invalid Form Body", "code": 50035,
                          "errors": {field: {"_errors": [{"code": "BASE_TYPE_BAD", "message": message}]}}}, 400)


def bad_name(name: object) -> str | None:
    """Why Discord refuses this webhook name or username, or None."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME:
        return f"Must be between 1 and {MAX_NAME} in length."
    if any(word in name.lower() for word in FORBIDDEN_IN_NAMES):
        return "Username cannot contain \"clyde\" or \"discord\"."
    if name.lower() in ("everyone", "here"):
        return "Username cannot be \"everyone\" or \"here\"."
    return None


class ChannelWebhooks:
    """The webhooks of the stand-in's channels and the routes that use them."""

    def __init__(self, rest: Rest) -> None:
        self.rest = rest
        self.world = rest.world
        self.hooks: dict[str, Webhook] = {}

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get(API + "/channels/{channel_id}/webhooks", self.list_channel)
        r.add_post(API + "/channels/{channel_id}/webhooks", self.create)
        r.add_get(API + "/webhooks/{app_id}/{token}/messages/{message_id}", self.get_message)

    def add_members_webhook(self, channel_id: str, name: str, user: User) -> Webhook:
        """A webhook a member made in the channel's settings (no application owns it), e.g. for an integration."""
        hook = Webhook(snowflake(), secrets.token_urlsafe(48), channel_id, self.world.guild_id, name, user, None)
        self.hooks[hook.id] = hook
        return hook

    def in_channel(self, channel_id: str) -> list[Webhook]:
        return [h for h in self.hooks.values() if h.channel_id == channel_id]

    # -- managing webhooks (bot token) -----------------------------------------------------------------------

    async def _channel_allowed(self, request: web.Request, route: str) -> str | web.Response:
        channel_id = request.match_info["channel_id"]
        try:
            channel = self.world.channel(channel_id)
        except KeyError:
            return error(404, "Unknown Channel", 10003)
        if not self.world.bot_permissions_in(channel) & MANAGE_WEBHOOKS:
            await self.rest.on_sent(Sent("webhook_create" if request.method == "POST" else "webhook_list", route,
                                         403, channel_id=channel_id))
            return error(403, "Missing Permissions", 50013)
        return channel_id

    async def list_channel(self, request: web.Request) -> web.Response:
        allowed = await self._channel_allowed(request, "GET /channels/{channel_id}/webhooks")
        if isinstance(allowed, web.Response):
            return allowed
        return json_response([h.payload() for h in self.in_channel(allowed)])

    async def create(self, request: web.Request) -> web.Response:
        route = "POST /channels/{channel_id}/webhooks"
        allowed = await self._channel_allowed(request, route)
        if isinstance(allowed, web.Response):
            return allowed
        body = await request.json() if request.can_read_body else {}
        if (why := bad_name(body.get("name"))) is not None:
            await self.rest.on_sent(Sent("webhook_create", route, 400, body, channel_id=allowed))
            return invalid_form("name", why)
        if len(self.in_channel(allowed)) >= MAX_PER_CHANNEL:
            await self.rest.on_sent(Sent("webhook_create", route, 400, body, channel_id=allowed))
            return error(400, "Maximum number of webhooks reached (15)", 30007)
        hook = Webhook(snowflake(), secrets.token_urlsafe(48), allowed, self.world.guild_id, body["name"],
                       self.world.bot_user, self.world.application_id)
        self.hooks[hook.id] = hook
        await self.rest.on_sent(Sent("webhook_create", route, 200, hook.payload(with_token=False), channel_id=allowed))
        return json_response(hook.payload())

    # -- using one (its token; no bot token needed) ----------------------------------------------------------

    def _hook(self, request: web.Request) -> Webhook | web.Response:
        hook = self.hooks.get(request.match_info["app_id"])
        if hook is None:
            return error(404, "Unknown Webhook", 10015)
        if hook.token != request.match_info["token"]:
            return error(401, "Invalid Webhook Token", 50027)
        return hook

    def _validate(self, payload: dict[str, Any], files: list[SentFile]) -> web.Response | None:
        if "username" in payload and (why := bad_name(payload["username"])) is not None:
            return invalid_form("username", why)
        if len(str(payload.get("content") or "")) > MAX_CONTENT:
            return invalid_form("content", f"Must be {MAX_CONTENT} or fewer in length.")
        for i, a in enumerate(payload.get("attachments") or []):
            if len(str(a.get("description") or "")) > MAX_DESCRIPTION:
                return invalid_form(f"attachments.{i}.description", f"Must be {MAX_DESCRIPTION} or fewer in length.")
        return None

    @staticmethod
    def _components(request: web.Request, hook: Webhook, payload: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The components to store, checked: None when the request does not set them (no ``components``, or no
        ``?with_components=true``, in which case Discord ignores them). Raises InvalidComponents."""
        if "components" not in payload or request.query.get("with_components", "").lower() not in ("1", "true"):
            return None
        components = check_message_components(payload["components"])
        if hook.application_id is None and any(b.get("style") != LINK_STYLE for b in buttons(components)):
            raise InvalidComponents("only a webhook owned by an application can send interactive components")
        return components

    def _dispatch(self, coro: Any) -> None:
        """Gateway events go out after the HTTP answer, as on Discord."""
        task = asyncio.get_running_loop().create_task(coro)
        self.rest._echoes.add(task)
        task.add_done_callback(self.rest._echoes.discard)

    async def execute(self, request: web.Request) -> web.Response:
        route = "POST /webhooks/{app_id}/{token}"
        hook = self._hook(request)
        if isinstance(hook, web.Response):
            return hook
        payload, files = await self.rest._read_body(request)
        refusal = self._validate(payload, files)
        if refusal is None and not (payload.get("content") or files or payload.get("embeds")):
            refusal = error(400, "Cannot send an empty message", 50006)
        try:
            components = self._components(request, hook, payload)
        except InvalidComponents as exc:
            refusal = refusal or invalid_form("components", str(exc))
            components = None
        if refusal is not None:
            await self.rest.on_sent(Sent("webhook_message", route, refusal.status, payload, files, hook.channel_id))
            return refusal
        name = str(payload.get("username") or hook.name)
        message = Message(snowflake(), hook.channel_id, hook.guild_id, User(hook.id, name, bot=True),
                          content=str(payload.get("content") or ""),
                          attachments=self.rest._store_files(hook.channel_id, files, payload),
                          flags=int(payload.get("flags") or 0) & (SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS),
                          allowed_mentions=payload.get("allowed_mentions"), webhook_id=hook.id,
                          avatar_url=payload.get("avatar_url"), components=components or [])
        self.world.messages[message.id] = message
        await self.rest.on_sent(Sent("webhook_message", route, 200, payload, files, hook.channel_id, message))
        self._dispatch(self.rest.gateway.dispatch_message(message))
        if request.query.get("wait", "").lower() in ("1", "true"):
            return json_response(message.payload())
        return web.Response(status=204)

    def _own_message(self, hook: Webhook, message_id: str) -> Message | None:
        message = self.world.messages.get(message_id)
        return message if message is not None and message.webhook_id == hook.id else None

    async def get_message(self, request: web.Request) -> web.Response:
        if request.match_info["token"] in self.rest.interactions:
            mid = request.match_info["message_id"]
            state = self.rest.interactions[request.match_info["token"]]
            found = self.world.messages.get(state.original_id or "" if mid == "@original" else mid)
            return json_response(found.payload()) if found else error(404, "Unknown Message", 10008)
        hook = self._hook(request)
        if isinstance(hook, web.Response):
            return hook
        message = self._own_message(hook, request.match_info["message_id"])
        return json_response(message.payload()) if message else error(404, "Unknown Message", 10008)

    async def edit_message(self, request: web.Request) -> web.Response:
        """Edit a message the webhook posted. ``attachments`` lists what stays: existing ones by id (as they are)
        and new uploads, matched in order to ``files[n]``; without ``attachments`` new files are added."""
        route = "PATCH /webhooks/{app_id}/{token}/messages/{message_id}"
        hook = self._hook(request)
        if isinstance(hook, web.Response):
            return hook
        message = self._own_message(hook, request.match_info["message_id"])
        if message is None:
            return error(404, "Unknown Message", 10008)
        payload, files = await self.rest._read_body(request)
        refusal = self._validate(payload, files)
        try:
            components = self._components(request, hook, payload)
        except InvalidComponents as exc:
            refusal, components = refusal or invalid_form("components", str(exc)), None
        if refusal is not None:
            await self.rest.on_sent(Sent("webhook_edit", route, 400, payload, files, hook.channel_id))
            return refusal
        if components is not None:
            message.components = components
        if "content" in payload:
            message.content = str(payload["content"] or "")
        if "attachments" in payload:
            existing = {a.id: a for a in message.attachments}
            listed = payload.get("attachments") or []
            kept = [existing[str(a.get("id"))] for a in listed if str(a.get("id")) in existing]
            new_entries = [a for a in listed if str(a.get("id")) not in existing]
            added = self.rest._store_files(hook.channel_id, files, {"attachments": new_entries})
            message.attachments = kept + added
        elif files:
            message.attachments += self.rest._store_files(hook.channel_id, files, {})
        await self.rest.on_sent(Sent("webhook_edit", route, 200, payload, files, hook.channel_id, message))
        self._dispatch(self.rest.gateway.dispatch("MESSAGE_UPDATE", message.payload()))
        return json_response(message.payload())

    async def delete_message(self, request: web.Request) -> web.Response:
        route = "DELETE /webhooks/{app_id}/{token}/messages/{message_id}"
        hook = self._hook(request)
        if isinstance(hook, web.Response):
            return hook
        message = self._own_message(hook, request.match_info["message_id"])
        if message is None:
            return error(404, "Unknown Message", 10008)
        del self.world.messages[message.id]
        await self.rest.on_sent(Sent("webhook_delete", route, 204, {"id": message.id}, channel_id=hook.channel_id,
                                     message=message))
        self._dispatch(self.rest.gateway.dispatch_delete(message))
        return web.Response(status=204)

