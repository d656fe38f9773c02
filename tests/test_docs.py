"""Documentation stays honest: every command explains itself and is in the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailaction.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
RELIABILITY = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help_with_an_example(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert main.commands[name].help


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_is_in_the_readme(name: str) -> None:
    assert f"mailaction {name}" in README


def test_readme_starts_with_the_two_setup_commands() -> None:
    first_commands = [line.split()[0:2] for line in README.splitlines() if line.startswith("    make ")]
    assert first_commands[:2] == [["make", "demo"], ["make", "test"]]


@pytest.mark.parametrize("reference", sorted(set(re.findall(r"`(test_\w+\.py::test_\w+)`", RELIABILITY))))
def test_every_test_named_in_the_reliability_promises_exists(reference: str) -> None:
    file_name, test_name = reference.split("::")
    source = (ROOT / "tests" / file_name).read_text(encoding="utf-8")
    assert re.search(rf"^(async )?def {test_name}\(", source, re.MULTILINE), reference
