"""Training settings are written once, as TrainConfig fields; `captionbot train` offers each of them as an option."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

import pytest
from captionbot.training import train_cli
from captionbot.training.dataclass_options import add_options, from_options, setting
from captionbot.training.train_config import TrainConfig


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captionbot train")
    train_cli.configure(parser)
    return parser


def other_value(value: object, kind: type) -> object:
    """A value of ``kind`` unlike ``value``."""
    if kind is bool:
        return not value
    if kind is Path:
        return Path("elsewhere")
    if kind is str:
        return "other"
    return 7 if value != 7 else 8


def test_without_options_the_command_trains_with_the_config_defaults() -> None:
    args = train_parser().parse_args(["--out", "run"])
    assert from_options(TrainConfig, args) == TrainConfig(out_dir=Path("run"))


def test_every_training_setting_is_an_option_that_reaches_its_field() -> None:
    parser = train_parser()
    by_field = {a.dest: a for a in parser._actions}
    defaults = TrainConfig(out_dir=Path("run"))
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        action = by_field[f.name]  # every field has its option
        kind = next(t for t in (*typing.get_args(hints[f.name]), hints[f.name]) if t is not type(None))
        wanted = other_value(getattr(defaults, f.name), kind)
        argv = ["--out", "run"] if f.name != "out_dir" else []
        argv += [action.option_strings[0]] if kind is bool else [action.option_strings[0], str(wanted)]
        cfg = from_options(TrainConfig, parser.parse_args(argv))
        assert getattr(cfg, f.name) == wanted, action.option_strings[0]
        assert cfg == dataclasses.replace(defaults, **{f.name: wanted})  # and no other field moved


def test_a_setting_written_once_becomes_a_documented_option(capsys: pytest.CaptureFixture[str]) -> None:
    @dataclasses.dataclass(kw_only=True)
    class Settings:
        target: Path = setting(group="io", help="where to write")
        rounds: int | None = setting(None, group="work", help="how many rounds (default: until done)")
        rate: float = setting(0.5, group="work", flag="--speed", metavar="R", help="how fast")
        quiet: bool = setting(False, group="io", help="say nothing")
        report: bool = setting(True, group="io", flag="--no-report", help="skip the report")
        secret: int = setting(3, group="work", help=argparse.SUPPRESS)
        internal: str = "not an option"

    parser = argparse.ArgumentParser(prog="tool")
    add_options(parser, Settings)
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    shown = capsys.readouterr().out
    assert "io:\n  --target TARGET  where to write" in shown
    assert "--rounds ROUNDS" in shown and "--speed R" in shown and "--no-report" in shown
    assert "secret" not in shown and "internal" not in shown

    got = from_options(Settings, parser.parse_args(["--target", "out", "--rounds", "4", "--speed", "2", "--quiet",
                                                    "--no-report", "--secret", "9"]))
    assert got == Settings(target=Path("out"), rounds=4, rate=2.0, quiet=True, report=False, secret=9)
    assert from_options(Settings, parser.parse_args(["--target", "out"])) == Settings(target=Path("out"))
    with pytest.raises(SystemExit):
        parser.parse_args([])  # a setting without a default is a required option
