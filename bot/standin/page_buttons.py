"""The local page's buttons and modals: a click on a message's button becomes the bot's component interaction,
and a modal the bot answers with becomes a form on the page, submitted as the modal's interaction.

This is the only place the page reaches for ``StandIn.press_button(channel, user, message, custom_id)`` and
``StandIn.submit_modal(channel, user, custom_id, values)`` (the stand-in's side of the feedback buttons). A
stand-in without them answers the page's clicks with 501 and a sentence the page shows; nothing else changes.

Routes (JSON bodies, validated: anything else is a 400 with an ``error`` the page shows, and a log line):

- ``POST /_standin/messages/{message_id}/press`` ``{"user": name, "custom_id": id}`` ->
  ``{"interaction_id": id | null, "modal": {"custom_id", "title", "inputs": [...]} | null}``
- ``POST /_standin/channels/{channel_id}/modals`` ``{"user": name, "custom_id": id, "values": {input id: text}}``
  -> ``{"interaction_id": id | null}``
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from captionbot.bot.standin.record import Sent
from captionbot.bot.standin.world import Message, User

if TYPE_CHECKING:
    from captionbot.bot.standin.server import StandIn

log = logging.getLogger(__name__)
MODAL_RESPONSE = 9  # interaction callback type: open a modal
BUTTON, TEXT_INPUT, LABEL = 2, 4, 18  # component types
MAX_CUSTOM_ID = 100
MAX_INPUT_VALUE = 4000
ANSWER_WITHIN_S = 3.0  # Discord's limit for an interaction's first response; a modal comes within it or not at all


class BadRequest(ValueError):
    """A page request the stand-in refuses (400), with a sentence for the person."""


class Buttons:
    """Routes that turn the page's button clicks and modal forms into interactions."""

    def __init__(self, standin: StandIn) -> None:
        self.standin = standin

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/_standin/messages/{message_id}/press", self.press)
        app.router.add_post("/_standin/channels/{channel_id}/modals", self.submit)

    async def press(self, request: web.Request) -> web.Response:
        message = self.standin.world.messages.get(request.match_info["message_id"])
        if message is None:
            return _refuse(404, "That message is gone.")
        try:
            body = await _json_object(request)
            user = self._user(body)
            custom_id = _text(body, "custom_id", MAX_CUSTOM_ID)
            if custom_id not in set(button_ids(message)):
                raise BadRequest("That message has no such button.")
        except BadRequest as exc:
            return _refuse(400, str(exc))
        press = getattr(self.standin, "press_button", None)
        if press is None:
            return _refuse(501, "Buttons are not wired in this stand-in yet (StandIn.press_button is missing).")
        start = len(self.standin.sent)
        channel = self.standin.world.channel(message.channel_id)
        state = await press(channel, user, message, custom_id)
        iid = getattr(state, "id", None)
        return web.json_response({"interaction_id": iid, "modal": await self._modal_after(start, iid)})

    async def submit(self, request: web.Request) -> web.Response:
        try:
            channel = self.standin.world.channel(request.match_info["channel_id"])
        except KeyError:
            return _refuse(404, "Unknown channel.")
        try:
            body = await _json_object(request)
            user = self._user(body)
            custom_id = _text(body, "custom_id", MAX_CUSTOM_ID)
            values = body.get("values")
            if not isinstance(values, dict) or not all(
                    isinstance(k, str) and 0 < len(k) <= MAX_CUSTOM_ID and isinstance(v, str)
                    and len(v) <= MAX_INPUT_VALUE for k, v in values.items()):
                raise BadRequest(f"values must map each input's id to its text (at most {MAX_INPUT_VALUE} "
                                 "characters).")
        except BadRequest as exc:
            return _refuse(400, str(exc))
        submit = getattr(self.standin, "submit_modal", None)
        if submit is None:
            return _refuse(501, "Modals are not wired in this stand-in yet (StandIn.submit_modal is missing).")
        state = await submit(channel, user, custom_id, {str(k): str(v) for k, v in values.items()})
        return web.json_response({"interaction_id": getattr(state, "id", None)})

    def _user(self, body: dict[str, Any]) -> User:
        name = _text(body, "user", 100)
        user = self.standin.world.users.get(name)
        if user is None or user.bot:
            raise BadRequest(f"Unknown member {name!r}.")
        return user

    async def _modal_after(self, start: int, interaction_id: str | None) -> dict[str, Any] | None:
        """The modal the bot opened in answer to the interaction (sent after record index ``start``), if any."""

        def answer() -> Sent | None:
            for s in self.standin.sent[start:]:
                if s.interaction_id is not None and interaction_id in (None, s.interaction_id):
                    return s
            return None

        try:
            await self.standin.wait_for(lambda _: answer() is not None, timeout=ANSWER_WITHIN_S)
        except TimeoutError:
            return None
        for s in self.standin.sent[start:]:
            if interaction_id in (None, s.interaction_id) and (modal := modal_of(s)) is not None:
                return modal
        return None


def button_ids(message: Message) -> Iterator[str]:
    """The custom ids of the message's (non-link) buttons."""
    for c in _walk(message.components):
        if c.get("type") == BUTTON and isinstance(c.get("custom_id"), str):
            yield c["custom_id"]


def modal_of(sent: Sent) -> dict[str, Any] | None:
    """A modal response in the record, simplified for the page: its id, title and text inputs (with labels)."""
    p = sent.payload
    if p.get("type") == MODAL_RESPONSE:
        data = p.get("data") or {}
    elif sent.kind == "modal":
        data = p.get("data", p)
    else:
        return None
    return {"custom_id": str(data.get("custom_id", "")), "title": str(data.get("title", "")),
            "inputs": list(_text_inputs(data.get("components") or []))}


def _text_inputs(components: list[Any], label: str | None = None) -> Iterator[dict[str, Any]]:
    """Text inputs in action rows (type 1) or in labels (type 18, whose ``label`` names the input)."""
    for c in components:
        if not isinstance(c, dict):
            continue
        if c.get("type") == TEXT_INPUT:
            yield {"custom_id": str(c.get("custom_id", "")), "label": str(c.get("label") or label or ""),
                   "paragraph": c.get("style") == 2, "value": str(c.get("value") or ""),
                   "placeholder": str(c.get("placeholder") or ""), "required": c.get("required", True) is not False,
                   "min_length": c.get("min_length"), "max_length": c.get("max_length")}
        elif c.get("type") == LABEL and isinstance(c.get("component"), dict):
            yield from _text_inputs([c["component"]], str(c.get("label") or ""))
        else:
            yield from _text_inputs(c.get("components") or [], label)


def _walk(components: list[Any]) -> Iterator[dict[str, Any]]:
    for c in components:
        if isinstance(c, dict):
            yield c
            yield from _walk(c.get("components") or [])


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("The request body must be JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _text(body: dict[str, Any], key: str, max_len: int) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise BadRequest(f"{key} must be text of 1 to {max_len} characters.")
    return value


def _refuse(status: int, message: str) -> web.Response:
    log.info("local page: refused a button or modal request (%d): %s", status, message)
    return web.json_response({"error": message}, status=status)
