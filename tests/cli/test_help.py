"""Every command's --help, as a user reads it at 80 columns: no line wider, and the text flows
(a docstring's own line breaks never show in the middle of a sentence)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sonarly_api import cli

WIDTH = 80


def commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in sorted(getattr(group, "commands", {}).items()):
        found += commands(command, (*path, name))
    return found


ALL = commands(typer.main.get_command(cli.app))


def description(help_text: str) -> list[str]:
    """The lines of help outside the usage line and the options' boxes."""
    lines = []
    for line in help_text.splitlines():
        if line.lstrip().startswith(("Usage:", "╭", "│", "╰")):
            continue
        lines.append(line.strip())
    return lines


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "sonarly-api")
def test_help_fits_and_flows(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli.app, [*path, "--help"], env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= WIDTH
    text = description(result.output)
    for line, following in zip(text, [*text[1:], ""], strict=True):
        # A line cut short with more of its paragraph on the next one: a docstring's break.
        cut_short = line and following and len(line) < WIDTH * 0.6
        assert not (cut_short and not line.endswith((".", ":", ")"))), (line, following)
