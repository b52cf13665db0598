"""deploy/.env.example lists every setting the code reads, with the code's default, and nothing the code ignores."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from deploy_files import COMPOSE_FILES, DEPLOY, REPO_ROOT, read_env_file, referenced_variables, settings_env
from pydantic import SecretStr

from captionbot.settings import Settings

ENV_EXAMPLE = DEPLOY / ".env.example"
RUNTIME_PACKAGES = ("captionbot", "bot", "inference")


def test_env_example_lists_every_setting_and_no_unknown_one() -> None:
    listed = {n for n in read_env_file(ENV_EXAMPLE).names if n.startswith("CAPTIONBOT_") or n == "DISCORD_TOKEN"}
    settings = set(settings_env())
    assert settings - listed == set(), f"settings missing from deploy/.env.example: {sorted(settings - listed)}"
    assert listed - settings == set(), f".env.example lists what the code never reads: {sorted(listed - settings)}"


def _value_as_setting(field: str, value: str, monkeypatch: pytest.MonkeyPatch) -> object:
    """What the code makes of ``value`` for ``field`` when it comes from the environment."""
    for env_name in settings_env():
        monkeypatch.delenv(env_name, raising=False)
    env_name = next(k for k, f in settings_env().items() if f == field)
    monkeypatch.setenv(env_name, value)
    return getattr(Settings(), field)


def test_env_example_shows_the_code_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    env = read_env_file(ENV_EXAMPLE)
    names = settings_env()
    defaults = {field: info.default for field, info in Settings.model_fields.items()}
    for name, value in {**env.documented, **env.active}.items():
        if name not in names:
            continue
        field, default = names[name], defaults[names[name]]
        if value == "":
            assert default is None, f"{name} is shown empty but defaults to {default!r}"
            continue
        parsed = _value_as_setting(field, value, monkeypatch)
        if isinstance(default, Path):  # shown relative to the source tree (the images set their own path)
            assert REPO_ROOT / value == default, f"{name}={value} but the default is {default}"
        elif isinstance(parsed, SecretStr):
            pytest.fail(f"{name} is a secret: .env.example must not show a value for it")
        else:
            assert parsed == default, f"{name}={value} in .env.example, but the code's default is {default!r}"


def test_secrets_are_empty_in_the_example() -> None:
    env = read_env_file(ENV_EXAMPLE)
    for name in ("DISCORD_TOKEN", "REDIS_PASSWORD"):
        assert env.active.get(name) == "", f"{name} must be present and empty in .env.example"


def test_every_setting_is_read_by_the_runtime_code() -> None:
    """A setting nobody reads is a knob that does nothing: each one appears as ``settings.<field>`` somewhere."""
    sources = "\n".join(p.read_text() for pkg in RUNTIME_PACKAGES for p in (REPO_ROOT / pkg).rglob("*.py")
                        if p.name != "settings.py")
    unread = [f for f in Settings.model_fields if not re.search(rf"settings(?:\(\))?\.{f}\b", sources)]
    assert unread == [], f"settings that no runtime code reads: {unread}"


def test_every_compose_variable_is_documented_and_every_documented_one_used() -> None:
    env = read_env_file(ENV_EXAMPLE)
    used = set().union(*(referenced_variables((DEPLOY / f).read_text()) for f in COMPOSE_FILES))
    compose_only = env.names - set(settings_env())
    assert used - env.names == set(), f"compose files read variables .env.example does not list: {used - env.names}"
    assert compose_only - used == set(), f".env.example lists compose variables nothing reads: {compose_only - used}"
