"""Servers as organisations run them: a private CA, a HELO name, one login attempt, proofs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mailaction.cli import main
from tests.privateca import PrivateCA, make_private_ca
from tests.smtpserver import FaultServer, FaultSession
from tests.test_security import PASSWORD, run, write_project

LOGIN = 'username = "ana"\npassword_env = "CAMPAIGN_SMTP_PASSWORD"'


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return make_private_ca(tmp_path_factory.mktemp("ca"))


def test_ca_file_verifies_a_server_of_a_private_ca(tmp_path: Path, private_ca: PrivateCA) -> None:
    with FaultServer(tls=private_ca.server_context(), require_starttls=True, auth={"ana": PASSWORD}) as server:
        smtp = f'security = "starttls"\nca_file = "{private_ca.ca_cert}"\n{LOGIN}'
        config = write_project(tmp_path, server.port, smtp)
        result = run(config, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert len(server.messages) == 2
    assert "verify_certificates" not in result.output


def test_without_ca_file_the_error_suggests_it(tmp_path: Path, private_ca: PrivateCA) -> None:
    with FaultServer(tls=private_ca.server_context(), require_starttls=True) as server:
        config = write_project(tmp_path, server.port, 'security = "starttls"')
        result = run(config, "send", "--yes")
    assert result.exit_code == 1
    assert "certificate cannot be verified" in result.output
    assert "set smtp.ca_file" in result.output
    assert not server.messages


def test_a_missing_ca_file_is_named(tmp_path: Path, private_ca: PrivateCA) -> None:
    with FaultServer(tls=private_ca.server_context(), require_starttls=True) as server:
        config = write_project(tmp_path, server.port, 'security = "starttls"\nca_file = "no-such-ca.pem"')
        result = run(config, "send", "--yes")
    assert result.exit_code == 1
    assert "smtp.ca_file" in result.output and "no-such-ca.pem" in result.output
    assert "Traceback" not in result.output
    assert server.connections == 0


def test_a_wrong_password_is_one_failed_login(tmp_path: Path) -> None:
    with FaultServer(auth={"ana": PASSWORD}) as server:
        config = write_project(tmp_path, server.port, LOGIN)
        result = CliRunner().invoke(
            main, ["send", "--yes", "--config", str(config)], env={"CAMPAIGN_SMTP_PASSWORD": "wrong"}
        )
    assert result.exit_code == 1
    assert "login refused for user 'ana'" in result.output
    assert server.commands["AUTH"] == 1
    assert [reply[:3] for reply in server.replies].count("535") == 1


def test_each_connection_logs_in_once(tmp_path: Path) -> None:
    with FaultServer(auth={"ana": PASSWORD}) as server:
        config = write_project(tmp_path, server.port, LOGIN)
        result = run(config, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert server.commands["AUTH"] == server.connections == len(server.logins)
    assert any(reply.startswith("235") for reply in server.replies)


def test_helo_name_is_said_in_ehlo(tmp_path: Path) -> None:
    said: list[str | None] = []

    async def record(session: FaultSession, arg: str | None) -> None:
        said.append(arg)

    with FaultServer() as server:
        server.on("EHLO", record)
        config = write_project(tmp_path, server.port, 'helo_name = "mail.example.org"')
        result = run(config, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert said and set(said) == {"mail.example.org"}


@pytest.mark.parametrize("name", ["two words", "bad_name!", ""])
def test_a_helo_name_that_is_no_host_name_is_refused(tmp_path: Path, name: str) -> None:
    config = write_project(tmp_path, 1025, f'helo_name = "{name}"')
    result = run(config, "validate")
    assert result.exit_code == 2
    assert "smtp.helo_name" in result.output
    assert "Traceback" not in result.output


def test_a_password_written_in_the_config_is_refused_and_not_echoed(tmp_path: Path) -> None:
    config = write_project(tmp_path, 1025, f'username = "ana"\npassword = "{PASSWORD}"')
    result = run(config, "validate")
    assert result.exit_code == 2
    assert "smtp.password must be \"keyring\"" in result.output
    assert PASSWORD not in result.output


def test_proof_copies_each_have_their_own_message_id(tmp_path: Path) -> None:
    with FaultServer() as server:
        config = write_project(tmp_path, server.port, "")
        for _ in range(2):
            proof = run(config, "send", "--yes", "--test-to", "me@example.net")
            assert proof.exit_code == 0, proof.output
        sent = run(config, "send", "--yes")
        assert sent.exit_code == 0, sent.output
    ids = [message.message_id for message in server.messages]
    assert len(ids) == 4
    assert len(set(ids)) == 4, ids
    assert [message.recipients for message in server.messages[:2]] == [("me@example.net",)] * 2
