"""The example campaign: `init` writes one that validates, `demo` sends it from any folder."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailaction.cli import main
from mailaction.config import load_config
from mailaction.example import example_config, write_example


def test_write_example_writes_a_campaign_that_loads(tmp_path: Path) -> None:
    written = write_example(tmp_path / "camp")

    names = {path.relative_to(tmp_path / "camp").as_posix() for path in written}
    assert names == {
        "mailaction.toml", "templates/urgent-action.txt", "templates/attachments/briefing.pdf",
        "contacts/supporters.csv",
    }  # fmt: skip
    config = load_config(tmp_path / "camp" / "mailaction.toml")
    assert config.campaign.template == tmp_path / "camp" / "templates" / "urgent-action.txt"
    assert config.campaign.template.read_bytes() == (
        example_config().parent / "templates" / "urgent-action.txt"
    ).read_bytes()


def test_init_then_validate_in_that_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    created = CliRunner().invoke(main, ["init", "camp"])
    assert created.exit_code == 0, created.output
    assert "cd camp && mailaction validate" in created.output

    monkeypatch.chdir(tmp_path / "camp")
    checked = CliRunner().invoke(main, ["validate"])
    assert checked.exit_code == 0, checked.output
    assert "30 letters ready" in checked.output


def test_init_overwrites_nothing(tmp_path: Path) -> None:
    (tmp_path / "contacts").mkdir()
    (tmp_path / "contacts" / "supporters.csv").write_text("mine\n")

    result = CliRunner().invoke(main, ["init", str(tmp_path)])

    assert result.exit_code == 2
    assert "supporters.csv: already exists" in result.output
    assert (tmp_path / "contacts" / "supporters.csv").read_text() == "mine\n"
    assert not (tmp_path / "mailaction.toml").exists()


def test_demo_writes_its_log_and_mail_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mailaction-demo").mkdir()
    (tmp_path / "mailaction-demo" / "notes.txt").write_text("keep me")

    for _ in range(2):  # a second demo starts afresh
        result = CliRunner().invoke(main, ["demo"])
        assert result.exit_code == 0, result.output

    assert len(mailbox.Maildir(tmp_path / "mailaction-demo" / "received")) == 30
    assert (tmp_path / "mailaction-demo" / "notes.txt").read_text() == "keep me"
    assert "mailaction report --log mailaction-demo/demo.sqlite" in result.output
    report = CliRunner().invoke(main, ["report", "--log", "mailaction-demo/demo.sqlite"])
    assert "All 30 letters were sent." in report.output
