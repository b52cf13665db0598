"""Message components on the stand-in: buttons on messages, modals, and what a user may do with them.

Discord's rules, as far as the bot can meet them (https://discord.com/developers/docs/components/reference):
a message has at most 5 action rows of at most 5 buttons; a button has a ``custom_id`` of 1-100 characters (unique
in its message) unless it is a link button (style 5, a ``url`` and no ``custom_id``); a label is at most 80
characters. A modal has a ``custom_id`` (1-100), a title (1-45) and 1-5 text inputs, each in an action row (or a
label component, type 18), with a ``custom_id``, a label (1-45), ``min_length`` 0-4000, ``max_length`` 1-4000 and
a prefilled ``value`` of at most 4000 characters. A payload that breaks these is answered 400 with code 50035
("Invalid Form Body"), as Discord does.

A user can press only a button that is on the message and enabled, and submit only a modal the bot showed *them*,
with values its inputs accept (the Discord client will not send anything else): :func:`find_button` and
:func:`submit_components` raise :class:`NotPossible` for anything else, so a test cannot do what a user cannot.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

ACTION_ROW, BUTTON, TEXT_INPUT, LABEL = 1, 2, 4, 18
LINK_STYLE = 5
MAX_ROWS = 5
MAX_ROW_ITEMS = 5
CUSTOM_ID_MAX = 100
BUTTON_LABEL_MAX = 80
MODAL_TITLE_MAX = 45
MAX_MODAL_INPUTS = 5
INPUT_LABEL_MAX = 45
INPUT_LENGTH_MAX = 4000


class InvalidComponents(ValueError):
    """The bot sent components Discord would refuse (400, code 50035); the message says which rule."""


class NotPossible(ValueError):
    """A test asked the stand-in to do something a Discord user cannot (press a missing button, submit a modal that
    was never shown to them, type more than an input allows)."""


def _custom_id(item: dict[str, Any], where: str) -> str:
    cid = item.get("custom_id")
    if not isinstance(cid, str) or not 1 <= len(cid) <= CUSTOM_ID_MAX:
        raise InvalidComponents(f"{where}: custom_id must be 1-{CUSTOM_ID_MAX} characters, got {cid!r}")
    return cid


def check_message_components(components: Any) -> list[dict[str, Any]]:
    """The components of a message the bot creates or edits, checked; raises :class:`InvalidComponents`."""
    if components is None:
        return []
    if not isinstance(components, list) or len(components) > MAX_ROWS:
        raise InvalidComponents(f"components: at most {MAX_ROWS} action rows")
    seen: set[str] = set()
    for r, row in enumerate(components):
        if not isinstance(row, dict) or row.get("type") != ACTION_ROW:
            raise InvalidComponents(f"components[{r}]: a message's top-level components are action rows (type 1)")
        items = row.get("components")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_ROW_ITEMS:
            raise InvalidComponents(f"components[{r}]: an action row holds 1-{MAX_ROW_ITEMS} buttons")
        for i, item in enumerate(items):
            where = f"components[{r}].components[{i}]"
            if not isinstance(item, dict) or item.get("type") != BUTTON:
                raise InvalidComponents(f"{where}: only buttons (type 2) are supported here")
            style = item.get("style")
            if style not in (1, 2, 3, 4, 5):
                raise InvalidComponents(f"{where}: button style must be 1-5, got {style!r}")
            label = item.get("label")
            if label is not None and (not isinstance(label, str) or len(label) > BUTTON_LABEL_MAX):
                raise InvalidComponents(f"{where}: a label is at most {BUTTON_LABEL_MAX} characters")
            if label is None and not item.get("emoji"):
                raise InvalidComponents(f"{where}: a button needs a label or an emoji")
            if style == LINK_STYLE:
                if "custom_id" in item or not item.get("url"):
                    raise InvalidComponents(f"{where}: a link button has a url and no custom_id")
                continue
            cid = _custom_id(item, where)
            if cid in seen:
                raise InvalidComponents(f"{where}: custom_id {cid!r} is used twice in one message")
            seen.add(cid)
    return components


def buttons(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in components:
        yield from (c for c in row.get("components", []) if c.get("type") == BUTTON)


def find_button(components: list[dict[str, Any]], custom_id: str) -> dict[str, Any]:
    """The enabled, non-link button with ``custom_id``; :class:`NotPossible` when a user could not press it."""
    for b in buttons(components):
        if b.get("custom_id") == custom_id:
            if b.get("disabled"):
                raise NotPossible(f"button {custom_id!r} is disabled")
            return b
    there = [b.get("custom_id") for b in buttons(components)]
    raise NotPossible(f"the message has no button {custom_id!r} (it has {there})")


@dataclass(frozen=True)
class TextInput:
    custom_id: str
    label: str
    style: int
    min_length: int
    max_length: int
    required: bool
    value: str


@dataclass(frozen=True)
class ShownModal:
    """A modal the bot showed a user (interaction callback type 9), until they submit it."""

    custom_id: str
    title: str
    inputs: tuple[TextInput, ...]
    user_id: str
    channel_id: str
    message_id: str | None  # the message whose button opened it; its submit interaction carries that message


def _text_input(item: dict[str, Any], where: str, label: Any = None) -> TextInput:
    cid = _custom_id(item, where)
    label = item.get("label") if label is None else label
    if not isinstance(label, str) or not 1 <= len(label) <= INPUT_LABEL_MAX:
        raise InvalidComponents(f"{where}: a text input's label is 1-{INPUT_LABEL_MAX} characters")
    style = item.get("style", 1)
    min_len, max_len = item.get("min_length", 0), item.get("max_length", INPUT_LENGTH_MAX)
    if style not in (1, 2):
        raise InvalidComponents(f"{where}: text input style must be 1 (short) or 2 (paragraph)")
    if not (isinstance(min_len, int) and 0 <= min_len <= INPUT_LENGTH_MAX):
        raise InvalidComponents(f"{where}: min_length must be 0-{INPUT_LENGTH_MAX}")
    if not (isinstance(max_len, int) and 1 <= max_len <= INPUT_LENGTH_MAX and max_len >= min_len):
        raise InvalidComponents(f"{where}: max_length must be 1-{INPUT_LENGTH_MAX} and at least min_length")
    value = item.get("value") or ""
    if not isinstance(value, str) or len(value) > INPUT_LENGTH_MAX:
        raise InvalidComponents(f"{where}: a prefilled value is at most {INPUT_LENGTH_MAX} characters")
    return TextInput(cid, label, style, min_len, max_len, bool(item.get("required", True)), value)


def parse_modal(data: dict[str, Any], user_id: str, channel_id: str, message_id: str | None) -> ShownModal:
    """The modal in a type-9 callback's ``data``, checked; raises :class:`InvalidComponents`."""
    cid = _custom_id(data, "modal")
    title = data.get("title")
    if not isinstance(title, str) or not 1 <= len(title) <= MODAL_TITLE_MAX:
        raise InvalidComponents(f"modal: title must be 1-{MODAL_TITLE_MAX} characters")
    rows = data.get("components")
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_MODAL_INPUTS:
        raise InvalidComponents(f"modal: 1-{MAX_MODAL_INPUTS} components")
    inputs = []
    for r, row in enumerate(rows):
        where = f"modal.components[{r}]"
        if isinstance(row, dict) and row.get("type") == ACTION_ROW and isinstance(row.get("components"), list) \
                and len(row["components"]) == 1 and row["components"][0].get("type") == TEXT_INPUT:
            inputs.append(_text_input(row["components"][0], where + ".components[0]"))
        elif isinstance(row, dict) and row.get("type") == LABEL and isinstance(row.get("component"), dict) \
                and row["component"].get("type") == TEXT_INPUT:
            inputs.append(_text_input(row["component"], where + ".component", label=row.get("label")))
        else:
            raise InvalidComponents(f"{where}: each is a text input in an action row (or a label)")
    if len({i.custom_id for i in inputs}) != len(inputs):
        raise InvalidComponents("modal: text input custom_ids must be unique")
    return ShownModal(cid, title, tuple(inputs), user_id, channel_id, message_id)


def submit_components(modal: ShownModal, values: dict[str, str]) -> list[dict[str, Any]]:
    """What the Discord client sends for ``values`` typed into ``modal``: an action row per input, each input's
    value (the prefilled one where ``values`` leaves it out). :class:`NotPossible` for what the client refuses."""
    known = {i.custom_id for i in modal.inputs}
    if unknown := set(values) - known:
        raise NotPossible(f"modal {modal.custom_id!r} has no inputs {sorted(unknown)} (it has {sorted(known)})")
    rows = []
    for i in modal.inputs:
        value = values.get(i.custom_id, i.value)
        if not isinstance(value, str):
            raise NotPossible(f"input {i.custom_id!r}: a value is text")
        if (value or i.required) and not i.min_length <= len(value) <= i.max_length:
            raise NotPossible(f"input {i.custom_id!r} takes {i.min_length}-{i.max_length} characters, "
                              f"not {len(value)}")
        if i.required and not value:
            raise NotPossible(f"input {i.custom_id!r} is required")
        rows.append({"type": ACTION_ROW, "components": [{"type": TEXT_INPUT, "custom_id": i.custom_id,
                                                         "value": value}]})
    return rows


class Modals:
    """The modals open on users' screens: one per (user, custom_id), the latest shown wins, gone once submitted."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], ShownModal] = {}

    def show(self, modal: ShownModal) -> None:
        self._open[(modal.user_id, modal.custom_id)] = modal

    def get(self, user_id: str, custom_id: str) -> ShownModal:
        """The modal open for this user; :class:`NotPossible` when there is none."""
        try:
            return self._open[(user_id, custom_id)]
        except KeyError:
            open_ids = [cid for (uid, cid) in self._open if uid == user_id]
            raise NotPossible(f"no modal {custom_id!r} is open for this user (open: {open_ids})") from None

    def close(self, modal: ShownModal) -> None:
        self._open.pop((modal.user_id, modal.custom_id), None)

    def open_for(self, user_id: str) -> list[ShownModal]:
        return [m for (uid, _), m in self._open.items() if uid == user_id]
