"""Security promises seen from the command line: the password stays secret, TLS means TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailaction.cli import main
from tests.smtpserver import Certificate, FaultServer, make_certificate, reject_recipient

PASSWORD = "Tr0ub4dor&3-secret"
COMMANDS = ["validate", "preview", "send", "report", "sink", "demo"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def write_project(folder: Path, port: int, smtp: str) -> Path:
    (folder / "letter.txt").write_text(
        "To: <{{ email }}>\nFrom: Campaign <campaign@example.org>\nSubject: Hello\n\nHello {{ name }}.\n",
        encoding="utf-8",
    )
    (folder / "contacts.csv").write_text(
        "email,name\nana@example.org,Ana\nbad@example.org,Bo\n", encoding="utf-8"
    )
    config = folder / "mailaction.toml"
    config.write_text(
        '[campaign]\nname = "secure"\ntemplate = "letter.txt"\ncontacts = "contacts.csv"\n\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\n{smtp}\n\n'
        "[sending]\nretry_delay = 0.01\nmax_retries = 0\n",
        encoding="utf-8",
    )
    return config


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, [args[0], "--config", str(config), *args[1:]], env={"CAMPAIGN_SMTP_PASSWORD": PASSWORD}
    )


def everything_written(folder: Path) -> bytes:
    """Every file the run left in the campaign folder (delivery log, WAL, reports)."""
    return b"".join(path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file())


@pytest.fixture
def login_server() -> Iterator[FaultServer]:
    with FaultServer(auth={"ana": PASSWORD}) as server:
        yield server


def test_the_password_appears_nowhere(tmp_path: Path, login_server: FaultServer) -> None:
    login_server.on("RCPT", reject_recipient("bad@example.org", "550 5.1.1 no such user"))
    config = write_project(
        tmp_path, login_server.port, 'username = "ana"\npassword_env = "CAMPAIGN_SMTP_PASSWORD"'
    )
    sent = run(config, "send", "--yes")
    assert sent.exit_code == 1, sent.output
    assert login_server.logins and len(login_server.messages) == 1
    outputs = [sent.output]
    for fmt in ("table", "csv", "json", "html"):
        report = run(config, "report", "--format", fmt, "--output", str(tmp_path / f"report.{fmt}"))
        assert report.exit_code == 0, report.output
        outputs.append(report.output)
    assert PASSWORD not in "".join(outputs)
    written = everything_written(tmp_path)
    assert b"no such user" in written  # the log and reports were read
    assert PASSWORD.encode() not in written


def test_a_wrong_password_is_not_echoed(tmp_path: Path, login_server: FaultServer) -> None:
    config = write_project(
        tmp_path, login_server.port, 'username = "ana"\npassword_env = "CAMPAIGN_SMTP_PASSWORD"'
    )
    result = CliRunner().invoke(
        main, ["send", "--yes", "--config", str(config)], env={"CAMPAIGN_SMTP_PASSWORD": "wrong-" + PASSWORD}
    )
    assert result.exit_code == 1
    assert "login refused for user 'ana'" in result.output
    assert PASSWORD not in result.output
    assert not login_server.messages


def test_no_password_and_no_terminal_is_a_clear_error(tmp_path: Path, login_server: FaultServer) -> None:
    config = write_project(tmp_path, login_server.port, 'username = "ana"')
    result = CliRunner().invoke(main, ["send", "--yes", "--config", str(config)])
    assert result.exit_code == 2
    assert "no SMTP password for 'ana'" in result.output
    assert "Traceback" not in result.output
    assert not login_server.messages


@pytest.mark.parametrize("command", COMMANDS)
def test_help_never_shows_a_password(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"], env={"CAMPAIGN_SMTP_PASSWORD": PASSWORD})
    assert result.exit_code == 0
    assert PASSWORD not in result.output


def test_starttls_not_offered_is_refused_before_any_login(tmp_path: Path) -> None:
    with FaultServer(auth={"ana": PASSWORD}) as server:
        config = write_project(
            tmp_path, server.port,
            'security = "starttls"\nusername = "ana"\npassword_env = "CAMPAIGN_SMTP_PASSWORD"',
        )  # fmt: skip
        result = run(config, "send", "--yes")
    assert result.exit_code == 1
    assert "does not offer STARTTLS" in result.output
    assert server.commands["AUTH"] == 0 and not server.logins
    assert not server.messages


def test_an_unverified_certificate_is_refused_by_default(tmp_path: Path, certificate: Certificate) -> None:
    with FaultServer(tls=certificate.server_context(), require_starttls=True) as server:
        config = write_project(tmp_path, server.port, 'security = "starttls"')
        result = run(config, "send", "--yes")
    assert result.exit_code == 1
    assert "certificate cannot be verified" in result.output
    assert not server.messages


def test_turning_verification_off_warns(tmp_path: Path, certificate: Certificate) -> None:
    with FaultServer(tls=certificate.server_context(), require_starttls=True) as server:
        config = write_project(tmp_path, server.port, 'security = "starttls"\nverify_certificates = false')
        result = run(config, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert "Warning: smtp.verify_certificates = false" in result.output
    assert len(server.messages) == 2


def test_ssl_against_a_plain_server_says_which_setting_to_use(tmp_path: Path) -> None:
    with FaultServer() as server:
        config = write_project(tmp_path, server.port, 'security = "ssl"')
        result = run(config, "send", "--yes")
    assert result.exit_code == 1
    assert "TLS failed: WRONG_VERSION_NUMBER" in result.output
    assert 'smtp.security = "starttls"' in result.output
    assert not server.messages
