"""Coming from mailmerge: `init --from-mailmerge` on a folder as `mailmerge --sample` makes it."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailaction.cli import main
from mailaction.config import load_config
from mailaction.errors import ConfigError
from mailaction.mailmerge import convert_mailmerge
from tests.smtpserver import FaultServer

SAMPLE_TEMPLATE = """\
TO: {{email}}
SUBJECT: Testing mailmerge
FROM: My Self <myself@example.org>
BCC: myself@example.org

Hi, {{name}},

Your number is {{number}}.
"""
SAMPLE_DATABASE = """\
email,name,number
myself@example.org,"Myself",17
bob@example.net,"Bob",42
"""


def sample_folder(folder: Path, server: str) -> Path:
    """The three files `mailmerge --sample` writes, with reserved domains and ``server``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mailmerge_template.txt").write_text(SAMPLE_TEMPLATE, encoding="utf-8")
    (folder / "mailmerge_database.csv").write_text(SAMPLE_DATABASE, encoding="utf-8")
    (folder / "mailmerge_server.conf").write_text(
        "# Mailmerge SMTP Server Config\n[smtp_server]\n" + textwrap.dedent(server), encoding="utf-8"
    )
    return folder


def test_a_sample_folder_sends_the_same_letters(tmp_path: Path) -> None:
    with FaultServer() as server:
        folder = sample_folder(tmp_path / "mm", f"host = 127.0.0.1\nport = {server.port}\nratelimit = 0\n")
        runner = CliRunner()
        converted = runner.invoke(main, ["init", "--from-mailmerge", str(folder)])
        assert converted.exit_code == 0, converted.output
        assert "mailaction.toml" in converted.output
        sent = runner.invoke(main, ["send", "--yes", "--config", str(folder / "mailaction.toml")])
        assert sent.exit_code == 0, sent.output
        received = sorted(server.messages, key=lambda message: message.recipients)
    # What mailmerge sends: envelope To + Bcc, From as written, no Bcc header, the body rendered.
    assert [message.recipients for message in received] == [
        ("bob@example.net", "myself@example.org"),
        ("myself@example.org",),
    ]
    assert {message.mail_from for message in received} == {"myself@example.org"}
    for message, (name, number) in zip(received, [("Bob", 42), ("Myself", 17)]):
        parsed = message.message
        assert parsed["From"] == "My Self <myself@example.org>"
        assert parsed["Subject"] == "Testing mailmerge"
        assert "Bcc" not in parsed
        body = parsed.get_body(preferencelist=("plain",))
        assert body is not None
        assert body.get_content().replace("\r\n", "\n") == f"Hi, {name},\n\nYour number is {number}.\n"


def test_the_server_settings_and_rate_limit_carry_over(tmp_path: Path) -> None:
    folder = sample_folder(
        tmp_path / "mm",
        """\
        host = smtp.example.org
        port = 465
        security = SSL/TLS
        username = ann
        ratelimit = 30
        """,
    )
    config_path = convert_mailmerge(folder, tmp_path / "campaign")
    config = load_config(config_path)
    assert (config.smtp.host, config.smtp.port, config.smtp.security) == ("smtp.example.org", 465, "ssl")
    assert (config.smtp.username, config.smtp.password_env) == ("ann", "SMTP_PASSWORD")
    assert config.sending.rate is not None
    assert config.sending.rate.per_second == pytest.approx(0.5)
    assert config.campaign.template is not None and config.campaign.contacts is not None
    assert config.campaign.template.resolve() == (folder / "mailmerge_template.txt").resolve()
    assert config.campaign.contacts.resolve() == (folder / "mailmerge_database.csv").resolve()
    assert tomllib.loads(config_path.read_text(encoding="utf-8"))["campaign"]["id_column"] == "email"


@pytest.mark.parametrize(
    ("security", "expected"),
    [("STARTTLS", "starttls"), ("PLAIN", "none"), ("Never", "none"), (None, "none")],
)
def test_every_security_name_maps(tmp_path: Path, security: str | None, expected: str) -> None:
    line = f"security = {security}\nusername = ann\n" if security else ""
    folder = sample_folder(tmp_path, f"host = 127.0.0.1\nport = 25\n{line}")
    assert load_config(convert_mailmerge(folder)).smtp.security == expected


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("host = h.example.org\nport = 587\nsecurity = XOAUTH\n", "security XOAUTH is not supported"),
        ("host = h.example.org\nport = 587\nsecurity = TLS9\n", "unrecognized security type: 'TLS9'"),
        ("host = h.example.org\nport = many\n", "invalid literal for int()"),
        ("port = 25\n", "No option 'host' in section: 'smtp_server'"),
        ("host = h.example.org\nport = 25\nratelimit = -1\n", "ratelimit must be 0"),
    ],
)
def test_bad_server_configs_are_one_line_errors(tmp_path: Path, server: str, message: str) -> None:
    folder = sample_folder(tmp_path, server)
    result = CliRunner().invoke(main, ["init", "--from-mailmerge", str(folder)])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {folder / 'mailmerge_server.conf'}: ")
    assert message in result.output
    assert not (folder / "mailaction.toml").exists()


def test_missing_files_and_an_existing_config_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mailmerge_template.txt: not found; is .* a mailmerge folder"):
        convert_mailmerge(tmp_path)
    folder = sample_folder(tmp_path / "mm", "host = 127.0.0.1\nport = 25\n")
    convert_mailmerge(folder)
    with pytest.raises(ConfigError, match="mailaction.toml: already exists"):
        convert_mailmerge(folder)


def test_init_without_a_mailmerge_folder_writes_the_example_campaign_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mailaction.toml").is_file()
    assert "Next: edit mailaction.toml, then mailaction validate" in result.output


def test_a_letter_without_subject_validates_with_a_warning(tmp_path: Path) -> None:
    folder = sample_folder(tmp_path, "host = 127.0.0.1\nport = 25\n")
    template = folder / "mailmerge_template.txt"
    template.write_text(SAMPLE_TEMPLATE.replace("SUBJECT: Testing mailmerge\n", ""), encoding="utf-8")
    config = convert_mailmerge(folder)
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()  # the first line says where the contacts were read
    assert lines[1] == (
        "Warning: mailmerge_template.txt: no Subject header; the letters go without a subject"
    )
    assert "2 letters ready" in result.output
