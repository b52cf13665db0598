"""Command-line options generated from a dataclass: each setting is written once, as a field with its CLI metadata.

A field declared with :func:`setting` becomes one argparse option in its named group: the flag defaults to
``--field-name``, the type comes from the annotation (``X | None`` -> ``X``), ``bool`` fields are switches
(default False: ``store_true``; default True: ``store_false`` under an explicit flag such as ``--no-progress``),
a field without a default is a required option. Fields without the metadata stay off the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import MISSING, Field
from typing import Any, TypeVar

_KEY = "cli"

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class CliOption:
    group: str  # the argparse group the option is listed in
    help: str  # argparse.SUPPRESS hides the option
    flag: str | None = None  # default: --field-name
    metavar: str | None = None  # default: the flag in capitals, as argparse writes it


def setting(default: Any = MISSING, *, group: str, help: str, flag: str | None = None,
            metavar: str | None = None) -> Any:
    """A dataclass field that is also a command-line option (no ``default``: a required option)."""
    return dataclasses.field(default=default, metadata={_KEY: CliOption(group, help, flag, metavar)})


def _value_type(annotation: Any) -> Any:
    """``int | None`` -> ``int``; other annotations unchanged."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner
    return annotation


def _cli_fields(cls: type) -> list[tuple[Field, CliOption]]:
    return [(f, f.metadata[_KEY]) for f in dataclasses.fields(cls) if _KEY in f.metadata]


def add_options(parser: argparse.ArgumentParser, cls: type,
                groups: dict[str, argparse._ArgumentGroup] | None = None) -> None:
    """Add one option per :func:`setting` field of ``cls``, in field order, each in its group.

    ``groups`` may hold groups the caller made (with its own options first); missing ones are created with the
    group name as title, in order of first use.
    """
    groups = dict(groups or {})
    hints = typing.get_type_hints(cls)
    for f, opt in _cli_fields(cls):
        if opt.group not in groups:
            groups[opt.group] = parser.add_argument_group(opt.group)
        flag = opt.flag or "--" + f.name.replace("_", "-")
        kind = _value_type(hints[f.name])
        kw: dict[str, Any] = {"dest": f.name, "help": opt.help}
        if kind is bool:
            if f.default is True and not opt.flag:
                raise TypeError(f"{cls.__name__}.{f.name} defaults to True: give it a flag such as --no-...")
            kw["action"] = "store_false" if f.default else "store_true"
        else:
            kw["type"] = kind
            kw["metavar"] = opt.metavar or flag.lstrip("-").replace("-", "_").upper()
            if f.default is MISSING:
                kw["required"] = True
            else:
                kw["default"] = f.default
        groups[opt.group].add_argument(flag, **kw)


def from_options(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """An instance of ``cls`` from the options :func:`add_options` added (``values`` for the other fields)."""
    for f, _ in _cli_fields(cls):
        values.setdefault(f.name, getattr(args, f.name))
    return cls(**values)
