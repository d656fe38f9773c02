"""Documentation stays honest: every command explains itself and is in the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailaction.cli import main
from tests.campaigns import RecordingSink, numbered_campaign

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


def test_the_python_api_example_in_the_readme_runs(
    tmp_path: Path, sink: RecordingSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = re.search(r"```python\n(.*?)```", README, re.DOTALL)
    assert example is not None
    numbered_campaign(tmp_path, sink.port, 3, "api", "concurrency = 1")
    monkeypatch.chdir(tmp_path)
    printed: list[tuple[object, ...]] = []
    exec(example.group(1), {"print": lambda *args: printed.append(args)})  # noqa: S102
    assert printed[0] == (3, "letters ready;", 0, "problems")
    assert printed[1] == (3, "letters to send")
    assert printed[2][0] == 3 and sink.count == 3
