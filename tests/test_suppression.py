"""The suppression list: matching, the `suppress` commands, and what `validate` counts."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailaction.cli import main
from mailaction.config import load_config
from mailaction.suppression import SuppressionError, SuppressionList, recipient_filter
from tests.campaigns import numbered_campaign


@pytest.fixture
def suppression(tmp_path: Path) -> Iterator[SuppressionList]:
    with SuppressionList(tmp_path / "suppressed.sqlite") as opened:
        yield opened


def test_addresses_match_whatever_their_case_and_unicode_form(suppression: SuppressionList) -> None:
    decomposed = unicodedata.normalize("NFD", "José@example.org")
    assert suppression.add(decomposed)
    assert "JOSÉ@EXAMPLE.ORG" in suppression
    assert "josé@example.org" in suppression
    assert "jose@example.org" not in suppression
    assert not suppression.add(" jose\u0301@Example.org ")  # already there
    assert len(suppression) == 1
    assert suppression.suppressed(["a@example.org", "Josè@example.org", "JOSÉ@example.org"])
    assert not suppression.suppressed(["a@example.org"])


def test_remove_takes_an_address_off(suppression: SuppressionList) -> None:
    suppression.add("a@example.org")
    assert suppression.remove("A@EXAMPLE.ORG")
    assert not suppression.remove("a@example.org")
    assert "a@example.org" not in suppression


def test_import_adds_each_line_and_skips_comments(
    tmp_path: Path, suppression: SuppressionList
) -> None:
    source = tmp_path / "opted-out.txt"
    source.write_text("# unsubscribed in June\na@example.org\n\nB@example.org\na@EXAMPLE.org\n")
    assert suppression.import_file(source) == 2
    assert [entry.address for entry in suppression] == ["a@example.org", "B@example.org"]
    assert all(entry.reason == "import: opted-out.txt" for entry in suppression)


def test_import_with_a_bad_line_names_it_and_adds_nothing(
    tmp_path: Path, suppression: SuppressionList
) -> None:
    source = tmp_path / "opted-out.txt"
    source.write_text("a@example.org\nnot an address\n")
    with pytest.raises(
        SuppressionError, match=r"opted-out.txt:2: 'not an address' is not a valid address"
    ):
        suppression.import_file(source)
    assert len(suppression) == 0


def test_a_proof_run_ignores_the_list(tmp_path: Path) -> None:
    config = load_config(numbered_campaign(tmp_path, 1025, 3, "held", ""))
    assert config.campaign.suppression == tmp_path / "suppressed.sqlite"
    with SuppressionList(tmp_path / "suppressed.sqlite") as suppression:
        suppression.add("P1@example.org")
    held = recipient_filter(config.campaign, proof=False)
    assert held(["p1@example.org"]) and not held(["p2@example.org"])
    assert not recipient_filter(config.campaign, proof=True)(["p1@example.org"])


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_suppress_commands_end_to_end(tmp_path: Path) -> None:
    config = str(numbered_campaign(tmp_path, 1025, 3, "held", ""))
    assert invoke("suppress", "add", "--config", config, "p0@example.org", "P2@example.org") == (
        0, f"Added 2, 0 already there; 2 on {tmp_path / 'suppressed.sqlite'}.\n",
    )  # fmt: skip
    code, output = invoke("suppress", "list", "--config", config)
    assert code == 0
    assert [line.split("\t")[:2] for line in output.splitlines()] == [
        ["p0@example.org", "manual"], ["P2@example.org", "manual"],
    ]  # fmt: skip
    code, output = invoke("validate", "--config", config)
    assert code == 0
    assert "2 suppressed: on the suppression list" in output
    code, output = invoke(
        "suppress", "remove", "--config", config, "p2@example.org", "p9@example.org"
    )
    assert (code, output.split(";")[0]) == (0, "Removed 1, 1 not on the list")
    assert "1 suppressed" in invoke("validate", "--config", config)[1]


def test_suppress_import_from_the_command_line(tmp_path: Path) -> None:
    source = tmp_path / "out.txt"
    source.write_text("x@example.org\ny@example.org\n")
    target = str(tmp_path / "shared.sqlite")
    assert invoke("suppress", "import", "--file", target, str(source))[0] == 0
    assert invoke("suppress", "list", "--file", target)[1].count("import: out.txt") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "bob@"], "suppress add: 'bob@' is not a valid address"),
        (["import", "absent.txt"], "absent.txt: cannot read the file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(
        main, ["suppress", args[0], "--file", str(tmp_path / "s.sqlite"), *args[1:]]
    )
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_list_in_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    code, output = invoke("suppress", "list", "--file", str(tmp_path / "no" / "such" / "s.sqlite"))
    assert code == 2
    assert "cannot open the suppression list" in output
