"""Reading deploy/ the way Docker Compose, Docker and kubectl would, for tests on machines without any of them.

``settings_env()`` derives the environment names from ``captionbot.settings.Settings`` (never a hand-written list);
``interpolate()`` implements Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``,
``${VAR?error}`` and ``$$`` (nested defaults included); ``service_environment()`` resolves a service's environment
as Compose hands it to the container (a key without a value is passed through from the ``.env`` file, or unset).
"""

from __future__ import annotations

import re
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices

from captionbot.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.workers.yml")
DOCKERFILES = ("Dockerfile.bot", "Dockerfile.worker", "Dockerfile.worker-gpu")
SETTING_LINE = re.compile(r"^(#?)([A-Z][A-Z0-9_]*)=(.*)$")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_env() -> dict[str, str]:
    """Environment variable name -> Settings field name, for every field of the Settings model."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: dict[str, str] = {}
    for field_name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            env = str(alias.choices[0])
        elif isinstance(alias, str):
            env = alias
        else:
            env = f"{prefix}{field_name}"
        names[env.upper()] = field_name
    return names


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def load_compose(name: str = "docker-compose.yml") -> dict[str, Any]:
    return load_yaml(DEPLOY / name)


# ---- .env files ---------------------------------------------------------------------------------------------


@dataclass
class EnvFile:
    """A Compose .env file: ``active`` lines (NAME=value) and ``documented`` ones (#NAME=default, commented out)."""

    active: dict[str, str] = field(default_factory=dict)
    documented: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        return set(self.active) | set(self.documented)


def read_env_file(path: Path) -> EnvFile:
    env = EnvFile()
    for line in path.read_text().splitlines():
        m = SETTING_LINE.match(line.strip())
        if m:
            commented, name, value = m.groups()
            (env.documented if commented else env.active)[name] = _unquote(value.strip())
    return env


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


# ---- Compose interpolation ----------------------------------------------------------------------------------


class MissingVariable(ValueError):
    """``${VAR:?message}`` with VAR unset or empty: Compose refuses to start and prints the message."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """``text`` with Compose's variable substitution applied, reading variables from ``env``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 1)
            out.append(_resolve(text[i + 2 : end], env))
            i = end + 1
        elif (m := NAME.match(text, i + 1)) is not None:
            out.append(env.get(m.group(), ""))
            i = m.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _closing_brace(text: str, open_at: int) -> int:
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    raise ValueError(f"unclosed ${{ in {text!r}")


def _resolve(expr: str, env: dict[str, str]) -> str:
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])(.*))?", expr, re.S)
    if m is None:
        raise ValueError(f"bad substitution ${{{expr}}}")
    name, op, arg = m.groups()
    value = env.get(name)
    if op == ":-":
        return value if value else interpolate(arg, env)
    if op == "-":
        return value if value is not None else interpolate(arg, env)
    if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
        raise MissingVariable(f"{name}: {interpolate(arg, env)}")
    return value or ""


def referenced_variables(text: str) -> set[str]:
    """Every variable a Compose file reads (``${NAME...}`` or ``$NAME``; ``$$`` is an escape, not a read)."""
    text = text.replace("$$", "")
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)) | set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text))


def service_environment(service: dict[str, Any], dotenv: dict[str, str]) -> dict[str, str]:
    """The container environment Compose builds for ``service`` from its ``environment`` and the .env values.

    A key with no value is taken from the .env / shell when set there and left out otherwise (Compose v2 unsets it,
    which also removes an image ENV of that name: tests/deploy/test_compose.py guards against that).
    """
    raw = service.get("environment") or {}
    if isinstance(raw, list):  # ["KEY=value", "KEY"] form
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    env: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            if key in dotenv:
                env[key] = dotenv[key]
        else:
            env[key] = interpolate(str(value), dotenv)
    return env


def passthrough_keys(service: dict[str, Any]) -> set[str]:
    raw = service.get("environment") or {}
    return {k for k, v in raw.items() if v is None}


# ---- Dockerfiles --------------------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.instructions if ins == instruction]

    def last(self, instruction: str) -> str | None:
        found = self.all(instruction)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """ENV KEY=value pairs of this stage (the ``KEY=value KEY2=value2`` form)."""
        out: dict[str, str] = {}
        for args in self.all("ENV"):
            for token in shlex.split(args):
                if "=" in token:
                    k, v = token.split("=", 1)
                    out[k] = v
        return out


def read_dockerfile(name: str) -> list[Stage]:
    """The stages of ``deploy/<name>``, with continuation lines joined and comments dropped."""
    text = (DEPLOY / name).read_text()
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            assert m, line
            stages.append(Stage(m.group(1), m.group(2)))
        elif stages:
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


def exec_form(args: str) -> list[str]:
    """A JSON-array instruction argument (CMD, ENTRYPOINT, HEALTHCHECK ... CMD [...]) as a list."""
    import json

    start = args.index("[")
    return json.loads(args[start:])
