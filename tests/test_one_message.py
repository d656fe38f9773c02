"""A problem that concerns every row is reported once; a row's own problem stays with its row."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mailaction.campaign import Campaign, PreparedRow, ValidationResult
from mailaction.cli import main
from mailaction.config import load_config
from mailaction.errors import Problem

HEADERS = "To: {{ email }}\nFrom: Campaign <campaign@example.org>\nSubject: Hello\n"


def campaign(folder: Path, template: str, rows: int = 47, extra: str = "") -> Path:
    """A campaign of ``rows`` contacts (columns email, First Name, file); returns its config."""
    lines = "".join(
        f"p{n}@example.org,Person {n},{extra if n == 3 else 'note.txt'}\n" for n in range(rows)
    )
    (folder / "contacts.csv").write_text("email,First Name,file\n" + lines, encoding="utf-8")
    (folder / "note.txt").write_text("a note\n", encoding="utf-8")
    (folder / "letter.txt").write_text(template, encoding="utf-8")
    config = folder / "mailaction.toml"
    config.write_text(
        '[campaign]\nname = "once"\ntemplate = "letter.txt"\ncontacts = "contacts.csv"\n',
        encoding="utf-8",
    )
    return config


def validate(config: Path) -> list[str]:
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output.splitlines()


def test_a_variable_that_is_no_column_is_one_line_for_all_47_rows(tmp_path: Path) -> None:
    config = campaign(tmp_path, HEADERS + "\nDear {{ first_name }},\n\nGreetings to {{ town }}.\n")
    assert validate(config) == [
        "contacts.csv, header on row 1",
        (
            "letter.txt:7 (body): uses {{ town }}, which is not a column (all 47 rows); "
            "the columns are: email, First Name, file"
        ),
        (
            "Error: 1 problem(s) in 47 row(s) of contacts.csv with letter.txt; 0 letter(s) ready. Fix them "
            "and run validate again; nothing was sent."
        ),
    ]


def test_a_missing_attachment_named_in_the_template_is_one_line(tmp_path: Path) -> None:
    config = campaign(tmp_path, "Attachment: briefing.pdf\n" + HEADERS + "\nDear friend,\n")
    lines = validate(config)
    assert len(lines) == 3
    assert lines[1].startswith("letter.txt:1 (Attachment): attachment 'briefing.pdf' not found")
    assert lines[1].endswith("(all 47 rows)")


def test_problems_of_single_rows_stay_with_their_rows(tmp_path: Path) -> None:
    template = "Attachment: {{ file }}\n" + HEADERS + "\n{{ greeting }}\n"
    config = campaign(tmp_path, template, rows=5, extra="gone.txt")
    lines = validate(config)
    assert lines[1] == (
        "letter.txt:6 (body): uses {{ greeting }}, which is not a column (all 5 rows); "
        "the columns are: email, First Name, file"
    )
    assert lines[2].startswith("contacts.csv:5 (Attachment): attachment 'gone.txt' not found")
    assert len(lines) == 4


def test_worker_processes_report_the_same_once(tmp_path: Path) -> None:
    config = campaign(tmp_path, HEADERS + "\n{{ town }} {{ email }}\n", rows=300)
    checked = Campaign(load_config(config))
    alone, pooled = checked.validate(workers=0), checked.validate(workers=2)
    assert alone.problems == pooled.problems
    assert [str(problem) for problem in alone.problems] == [
        (
            "letter.txt:5 (body): uses {{ town }}, which is not a column (all 300 rows); "
            "the columns are: email, First Name, file"
        )
    ]
    assert (alone.problem_count, alone.invalid_rows) == (1, 300)


def test_a_list_20000_columns_wide_is_validated(tmp_path: Path) -> None:
    # Column names are handled in linear time (benchmarks/wide_columns.py measures it).
    names = ["email", *(f"Column {n}" for n in range(20_000))]
    values = ",".join(str(n) for n in range(20_000))
    (tmp_path / "contacts.csv").write_text(
        ",".join(names) + f"\np1@example.org,{values}\np2@example.org,{values}\n", encoding="utf-8"
    )
    (tmp_path / "letter.txt").write_text(
        HEADERS + "\n{{ column_19999 }} {{ town }}\n", encoding="utf-8"
    )
    config = tmp_path / "mailaction.toml"
    config.write_text(
        '[campaign]\ntemplate = "letter.txt"\ncontacts = "contacts.csv"\n', encoding="utf-8"
    )
    result = Campaign(load_config(config)).validate(workers=0)
    assert [str(problem) for problem in result.problems] == [
        "letter.txt:5 (body): uses {{ town }}, which is not a column (all 2 rows); the columns are: "
        + ", ".join(names[:100])
        + ", … (20,001 in all)"
    ]


def test_validation_result_counts_a_template_problem_once_and_keeps_row_problems() -> None:
    shared = Problem(
        "letter.txt:3",
        None,
        "body",
        "uses {{ town }}, which is not a column; the columns are: email",
    )
    result = ValidationResult(keep=1)
    result.add(PreparedRow(2, "a", None, [shared, Problem("contacts.csv", 2, "To", "bad")]))
    assert result.problems[0].message.endswith(
        "not a column (the only row); the columns are: email"
    )
    result.add(PreparedRow(3, "b", None, [shared, Problem("contacts.csv", 3, "To", "worse")]))
    result.add(PreparedRow(4, "c", None, []))
    assert [str(p) for p in result.problems] == [
        "letter.txt:3 (body): uses {{ town }}, which is not a column (2 of 3 rows); the columns are: email",
        "contacts.csv:2 (To): bad",
    ]
    assert (result.ready, result.invalid_rows, result.problem_count) == (1, 2, 3)
