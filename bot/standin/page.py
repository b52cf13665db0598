"""The local page (``/``): post an image into a channel, or ask ``/caption`` or ``/find``, and watch the bot's replies.

Also a small JSON API used by the page and by ``captionbot standin`` users: ``/_standin/state``,
``/_standin/channels/{id}/messages`` (GET: the channel's messages as the page draws them; POST: upload as a
user, or run ``/caption`` or ``/find``), ``/_standin/faults`` and ``/_standin/sent``. Button clicks and modals:
:mod:`captionbot.bot.standin.page_buttons`.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from captionbot.bot.standin.page_buttons import Buttons
from captionbot.bot.standin.world import EPHEMERAL, Message

from captionbot.formats import MAX_BEAM_SIZE, MAX_FIND_QUERY_CHARS, MAX_VARIANTS, MIN_BEAM_SIZE, MIN_VARIANTS

if TYPE_CHECKING:
    from captionbot.bot.standin.server import StandIn

log = logging.getLogger(__name__)


class Page:
    def __init__(self, standin: StandIn) -> None:
        self.standin = standin
        self.buttons = Buttons(standin)

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self.index)
        r.add_get("/_standin/state", self.state)
        r.add_get("/_standin/channels/{channel_id}/messages", self.channel_messages)
        r.add_post("/_standin/channels/{channel_id}/messages", self.upload)
        r.add_post("/_standin/faults", self.faults)
        r.add_get("/_standin/sent", self.sent)
        self.buttons.add_routes(app)

    async def index(self, request: web.Request) -> web.Response:
        html = resources.files("captionbot.bot.standin").joinpath("page.html").read_text()
        return web.Response(text=html, content_type="text/html")

    async def state(self, request: web.Request) -> web.Response:
        w = self.standin.world
        return web.json_response({
            "guild": {"id": w.guild_id, "name": "Stand-in Guild"},
            "channels": [{"id": c.id, "name": c.name} for c in w.channels.values()],
            "users": [u.name for u in w.users.values() if not u.bot],
            "bot_connected": any(s.conn is not None for s in self.standin.gateway.sessions.values()),
        })

    async def channel_messages(self, request: web.Request) -> web.Response:
        cid = request.match_info["channel_id"]
        msgs = sorted((m for m in self.standin.world.messages.values() if m.channel_id == cid), key=lambda m: int(m.id))
        return web.json_response([_view(m) for m in msgs])

    async def upload(self, request: web.Request) -> web.Response:
        """Form fields: user, content, file (one or more), mode = post | caption | find; for ``/caption`` also
        heatmap = on | off (absent or empty: the channel's setting), voice = on, beam = 1..8, variants = 1..3;
        for ``/find`` words (1 to 200 characters).

        Answers ``{"message_id"}`` or ``{"interaction_id"}``, or a 400/404 ``{"error"}`` the page shows."""
        from captionbot.bot.standin.server import FileToPost

        form = await request.post()
        try:
            channel = self.standin.world.channel(request.match_info["channel_id"])
        except KeyError:
            return _refuse(404, "Unknown channel.")
        user = self.standin.world.users.get(str(form.get("user") or "alice"))
        if user is None or user.bot:
            return _refuse(400, "Unknown member.")
        files = [FileToPost(v.filename, v.file.read(), v.content_type) for k, v in form.items()
                 if k == "file" and isinstance(v, web.FileField) and v.filename]
        if form.get("mode") == "caption":
            if not files:
                return _refuse(400, "Choose an image first.")
            options: dict[str, Any] = {"image": files[0], "heatmap": _heatmap(form.get("heatmap")),
                                       "voice": True if form.get("voice") == "on" else None}
            for name, low, high in (("beam", MIN_BEAM_SIZE, MAX_BEAM_SIZE), ("variants", MIN_VARIANTS, MAX_VARIANTS)):
                value = str(form.get(name) or "").strip()
                if value:  # Discord's client allows only the command's declared range
                    if not value.isdigit() or not low <= int(value) <= high:
                        return _refuse(400, f"{name} must be a whole number from {low} to {high}.")
                    options[name] = int(value)
            state = await self.standin.slash(channel, user, "caption", **options)
            return web.json_response({"interaction_id": state.id})
        if form.get("mode") == "find":
            words = " ".join(str(form.get("words") or "").split())
            if not words:
                return _refuse(400, "Write what to look for first.")
            if len(words) > MAX_FIND_QUERY_CHARS:
                return _refuse(400, f"words must be at most {MAX_FIND_QUERY_CHARS} characters.")
            state = await self.standin.slash(channel, user, "find", words=words)
            return web.json_response({"interaction_id": state.id})
        if not files and not str(form.get("content") or "").strip():
            return _refuse(400, "Write a message or choose an image first.")
        message = await self.standin.post_message(channel, user, str(form.get("content") or ""), files)
        return web.json_response({"message_id": message.id})

    async def faults(self, request: web.Request) -> web.Response:
        """``{"disconnect": true}``, ``{"rate_limit": {...}}``, ``{"server_error": {...}}``, ``{"slow_cdn": s}``,
        ``{"clear": true}``."""
        body: dict[str, Any] = await request.json()
        f = self.standin.faults
        if body.get("clear"):
            f.clear()
        if "rate_limit" in body:
            f.rate_limit(**body["rate_limit"])
        if "server_error" in body:
            f.server_error(**body["server_error"])
        if "slow_cdn" in body:
            f.slow_cdn(float(body["slow_cdn"]))
        closed = await self.standin.disconnect_bot() if body.get("disconnect") else 0
        return web.json_response({"ok": True, "disconnected": closed})

    async def sent(self, request: web.Request) -> web.Response:
        return web.json_response([{"kind": s.kind, "route": s.route, "status": s.status, "content": s.content,
                                   "files": [f.filename for f in s.files], "ephemeral": s.ephemeral}
                                  for s in self.standin.sent])


def _heatmap(value: object) -> bool | None:
    """The page's heatmap choice: on (or a ticked box), off, or the channel's setting (None: option left out)."""
    return {"on": True, "true": True, "off": False, "false": False}.get(str(value or "").lower())


def _refuse(status: int, message: str) -> web.Response:
    log.info("local page: refused a post (%d): %s", status, message)
    return web.json_response({"error": message}, status=status)


def _view(m: Message) -> dict[str, Any]:
    """A message as the page draws it, whoever sent it (members, the bot, webhook posts under a member's name and
    the avatar they were posted with)."""
    return {"id": m.id, "author": m.author.name, "avatar": m.avatar_url or m.author.avatar_url, "bot": m.author.bot,
            "webhook": m.webhook_id is not None,
            "content": m.content, "reply_to": m.reference_id, "ephemeral": bool(m.flags & EPHEMERAL),
            "interaction": m.interaction_id, "embeds": m.embeds, "components": m.components,
            "attachments": [{"url": a.url, "filename": a.filename, "content_type": a.content_type,
                             "description": a.description} for a in m.attachments]}
