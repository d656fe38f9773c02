"""The CLI end to end: CliRunner against a real SMTP sink on loopback."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailaction.cli import main
from mailaction.deliverylog import DeliveryLog, State
from mailaction.message import Letter
from mailaction.sink import Sink
from tests.campaigns import CONTACTS, TEMPLATE

ROOT = Path(__file__).resolve().parent.parent

def run(project: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, [*args[:1], "--config", str(project / "mailaction.toml"), *args[1:]], input=input)


def log_states(project: Path, campaign: str = "Test action") -> dict[str, State]:
    with DeliveryLog(project / "test-action.sqlite", campaign) as log:
        return {entry.contact_id: entry.state for entry in log.entries()}


def received(project: Path) -> list[str]:
    return sorted(message["To"] for message in mailbox.Maildir(project / "maildir"))


def test_validate_reports_ready_letters(project: Path) -> None:
    result = run(project, "validate")
    assert result.exit_code == 0, result.output
    assert "3 letters ready" in result.output


def test_validate_reports_every_bad_row_with_its_number(project: Path) -> None:
    (project / "contacts.csv").write_text(
        "email,first_name,last_name,town\nana@example.org,Ana,Silva,\nbob@,Bob,B,\n\n"
        "carol@example.org,Carol,C,\nana@EXAMPLE.org,Ana,Again,\n",
        encoding="utf-8",
    )
    result = run(project, "validate")
    assert result.exit_code == 2
    assert "contacts.csv:3 (To)" in result.output
    assert "contacts.csv:6 (email)" in result.output and "row 2" in result.output
    assert "Traceback" not in result.output


def test_validate_names_an_undefined_variable_once_with_the_rows_it_concerns(project: Path) -> None:
    (project / "letter.txt").write_text(TEMPLATE.replace("{{ town }}", "{{ city }}"), encoding="utf-8")
    result = run(project, "validate")
    assert result.exit_code == 2
    assert result.output.splitlines()[:2] == [
        "contacts.csv, header on row 1",
        ("letter.txt:7 (body): uses {{ city }}, which is not a column (2 of 3 rows); "
        "the columns are: email, first_name, last_name, town"),
    ]


def test_template_syntax_error_is_one_line_with_line_number(project: Path) -> None:
    (project / "letter.txt").write_text(TEMPLATE.replace("{{ first_name }},", "{{ first_name },"), encoding="utf-8")
    result = run(project, "validate")
    assert result.exit_code == 2
    assert "letter.txt:5" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--template", "missing.txt"], "missing.txt"),
        (["--contacts", "missing.csv"], "missing.csv"),
    ],
)
def test_missing_files_are_one_line_errors(project: Path, args: list[str], message: str) -> None:
    result = run(project, "validate", *[str(project / a) if a.startswith("missing") else a for a in args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_config_key_is_named(project: Path) -> None:
    config = project / "mailaction.toml"
    config.write_text(config.read_text() + "\nspeed = 3\n".replace("speed", "sped"), encoding="utf-8")
    result = run(project, "validate")
    assert result.exit_code == 2
    assert "sending.sped" in result.output


def test_preview_writes_eml_files_and_an_index(project: Path) -> None:
    out = project / "preview"
    result = run(project, "preview", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*.eml"))) == 3
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "Hello Chen" in index


def test_preview_row_shows_that_letter(project: Path) -> None:
    result = run(project, "preview", "--row", "4")
    assert result.exit_code == 0, result.output
    assert "Dear Chen" in result.output
    assert "Dear Ana" not in result.output


def test_preview_shows_every_row_asked_for(project: Path) -> None:
    result = run(project, "preview", "--row", "2", "--row", "3", "--row", "4")
    assert result.exit_code == 0, result.output
    assert all(f"Dear {name}" in result.output for name in ("Ana", "Bo", "Chen"))


@pytest.mark.parametrize(("row", "message"), [("9", "no contact on row 9"), ("1", "--row")])
def test_preview_of_a_row_without_a_contact_is_refused(project: Path, row: str, message: str) -> None:
    result = run(project, "preview", "--row", "2", "--row", row)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_after_send_limit_the_report_counts_the_rest_as_pending(project: Path, sink: Sink) -> None:
    sent = run(project, "send", "--yes", "--limit", "1")
    assert sent.exit_code == 0, sent.output
    assert "1 of 3 letters sent; 2 pending" in sent.output
    report = json.loads(run(project, "report", "--format", "json").output)
    assert report["summary"] | {"total": 3, "sent": 1, "pending": 2} == report["summary"]
    assert sink.count == 1


@pytest.mark.parametrize(
    "args",
    [["preview", "--out", "{file}/preview"], ["report", "--format", "html", "-o", "{file}/report.html"]],
)
def test_an_output_path_that_cannot_be_written_is_one_line(project: Path, sink: Sink, args: list[str]) -> None:
    assert run(project, "send", "--yes").exit_code == 0
    blocker = project / "notes.txt"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    result = run(project, *(arg.format(file=blocker) for arg in args))
    assert result.exit_code == 2
    assert f"{blocker}/" in result.output and "Not a directory" in result.output
    assert "Traceback" not in result.output


def test_sink_into_a_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    result = CliRunner().invoke(main, ["sink", "--port", "0", "--maildir", str(blocker / "mail")])
    assert result.exit_code == 2
    assert "Not a directory" in result.output


def test_letters_left_for_later_of_removed_contacts_leave_the_log(project: Path, sink: Sink) -> None:
    assert run(project, "send", "--yes", "--limit", "1").exit_code == 0
    without_chen = "\n".join(line for line in CONTACTS.splitlines() if "chen" not in line) + "\n"
    (project / "contacts.csv").write_text(without_chen, encoding="utf-8")
    dry = run(project, "send", "--dry-run")
    assert "1 queued earlier but gone from the contact list" in dry.output
    assert len(log_states(project)) == 3
    result = run(project, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert "All 2 letters were sent." in result.output
    assert log_states(project) == {"ana@example.org": State.SENT, "bo@example.com": State.SENT}
    assert sink.count == 2


def test_report_of_a_log_without_its_config_shows_the_campaign_it_holds(
    project: Path, sink: Sink, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(project, "send", "--yes").exit_code == 0
    assert run(project, "send", "--yes", "--test-to", "me@example.org").exit_code == 0
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    log = project / "test-action.sqlite"
    result = CliRunner().invoke(main, ["report", "--log", str(log), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["campaign"], report["summary"]["sent"]) == ("Test action", 3)
    with DeliveryLog(log, "Other action") as other:
        address = "dee@example.org"
        other.register(Letter(2, address, "campaign@example.org", (address,), "Hello",
                              "<dee.other@example.org>", "f", b""))  # fmt: skip
    several = CliRunner().invoke(main, ["report", "--log", str(log)])
    assert several.exit_code == 2
    assert "holds several campaigns (Other action, Test action)" in several.output


def test_send_needs_yes_without_a_terminal(project: Path, sink: Sink) -> None:
    result = run(project, "send")
    assert result.exit_code == 2
    assert "--yes" in result.output
    assert sink.count == 0


def test_send_then_resend_sends_each_letter_once(project: Path, sink: Sink) -> None:
    first = run(project, "send", "--yes")
    assert first.exit_code == 0, first.output
    assert sink.count == 3
    assert set(log_states(project).values()) == {State.SENT}
    second = run(project, "send", "--yes")
    assert second.exit_code == 0, second.output
    assert "3 already sent" in second.output
    assert sink.count == 3


def test_send_limit_then_resume(project: Path, sink: Sink) -> None:
    assert run(project, "send", "--yes", "--limit", "1").exit_code == 0
    assert sink.count == 1
    assert run(project, "send", "--yes").exit_code == 0
    assert sink.count == 3
    assert len(set(received(project))) == 3


def test_dry_run_sends_nothing_and_writes_no_sent_state(project: Path, sink: Sink) -> None:
    result = run(project, "send", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output
    assert "ana@example.org" in result.output
    assert sink.count == 0
    assert not (project / "test-action.sqlite").exists()


def test_test_to_sends_one_proof_copy_logged_apart(project: Path, sink: Sink) -> None:
    result = run(project, "send", "--yes", "--test-to", "me@example.org")
    assert result.exit_code == 0, result.output
    assert sink.count == 1
    assert log_states(project, "Test action [test]") == {"ana@example.org": State.SENT}
    assert log_states(project) == {}
    assert "later run" not in result.output
    assert "1 proof copy to me@example.org" in result.output


def test_invalid_row_blocks_the_whole_send(project: Path, sink: Sink) -> None:
    (project / "contacts.csv").write_text(CONTACTS + "not-an-address,Dee,D,\n", encoding="utf-8")
    result = run(project, "send", "--yes")
    assert result.exit_code == 2
    assert "contacts.csv:5" in result.output
    assert sink.count == 0


def test_report_json_counts_match_the_sink(project: Path, sink: Sink) -> None:
    assert run(project, "send", "--yes").exit_code == 0
    result = run(project, "report", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["summary"]["total"] == 3
    assert data["summary"]["sent"] == sink.count == 3


def test_report_without_a_log_says_so(project: Path) -> None:
    result = run(project, "report")
    assert result.exit_code == 2
    assert "send" in result.output
    assert "Traceback" not in result.output


def test_send_to_a_closed_port_fails_cleanly(project: Path, free_port: int) -> None:
    config = project / "mailaction.toml"
    text = config.read_text()
    config.write_text(text.replace("port = ", f"port = {free_port}\n# was ", 1), encoding="utf-8")
    result = run(project, "send", "--yes")
    assert result.exit_code == 1
    assert f"127.0.0.1:{free_port}" in result.output
    assert "Traceback" not in result.output


def test_letters_edited_after_a_crash_are_reported_not_resent(project: Path, sink: Sink) -> None:
    assert run(project, "send", "--yes", "--limit", "2").exit_code == 0
    with DeliveryLog(project / "test-action.sqlite", "Test action") as log:
        log.mark_sending("bo@example.com")  # what a crash while sending Bo's letter leaves behind
    template = project / "letter.txt"
    template.write_text(template.read_text(encoding="utf-8").replace("Thank you", "Thanks again"), encoding="utf-8")
    result = run(project, "send", "--yes")
    assert result.exit_code == 1, result.output  # a letter is left uncertain
    assert "1 were in flight when an earlier run stopped" in result.output
    assert "1 queued earlier and changed since" in result.output
    assert "2 changed since they were sent or tried; not re-sent (rows 2, 3)" in result.output
    assert sink.count == 3
    states = log_states(project)
    assert states == {"ana@example.org": State.SENT, "bo@example.com": State.UNCERTAIN, "chen@example.net": State.SENT}
    newest = [m for m in mailbox.Maildir(project / "maildir") if "Chen" in str(m["To"])]
    assert "Thanks again" in newest[0].get_payload(decode=True).decode()
