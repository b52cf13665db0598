"""The `captionbot` command dispatches to the packages and every subcommand explains itself."""

import subprocess
import sys

from captionbot.cli import build_parser


def test_every_subcommand_prints_help() -> None:
    parser = build_parser()
    names = list(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for name in names:
        out = subprocess.run([sys.executable, "-m", "captionbot.cli", name, "--help"], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "usage: captionbot" in out.stdout


def test_no_subcommand_prints_usage_and_fails() -> None:
    out = subprocess.run([sys.executable, "-m", "captionbot.cli"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "COMMAND" in out.stdout
