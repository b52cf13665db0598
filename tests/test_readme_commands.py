"""README's list of commands is the one `captionbot --help` prints: a newcomer reads one, runs the other."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def help_subcommands() -> list[str]:
    """The subcommands `captionbot --help` lists, in its order (the indented names under COMMAND)."""
    out = subprocess.run([sys.executable, "-m", "captionbot.cli", "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    listing = out.split("COMMAND\n", 1)[1].split("\noptions:", 1)[0]
    return re.findall(r"^ {4}(\w[\w-]*)", listing, flags=re.MULTILINE)


def readme_subcommands() -> list[str]:
    """The names in README's sentence "Commands: `captionbot --help` lists them: `run`, `bot`, ...."."""
    m = re.search(r"Commands: `captionbot --help` lists them: (.+?)\.\s*\n\s*\n", README.read_text(), re.DOTALL)
    assert m, "README has no line 'Commands: `captionbot --help` lists them: ...'"
    return re.findall(r"`([\w-]+)`", m.group(1))


def test_readme_lists_the_subcommands_of_captionbot_help() -> None:
    listed = help_subcommands()
    assert {"run", "bot", "worker", "standin"} <= set(listed), listed  # the parser of the help text still works
    assert readme_subcommands() == listed
