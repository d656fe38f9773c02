"""validate --server: connect, secure, log in and read what the server accepts; send nothing."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mailaction.cli import main
from mailaction.config import load_config
from mailaction.preflight import check_server_account, server_limited
from tests.privateca import make_private_ca
from tests.smtpserver import FaultServer
from tests.test_security import PASSWORD, run, write_project

LOGIN = 'username = "ana"\npassword_env = "CAMPAIGN_SMTP_PASSWORD"'


def with_long_letter(config: Path) -> None:
    """Row 3's letter is about 6 kB; row 2's well under 1 kB."""
    long_name = " ".join(["Bartholomew"] * 500)
    (config.parent / "contacts.csv").write_text(
        f"email,name\nana@example.org,Ana\nbo@example.org,{long_name}\n", encoding="utf-8"
    )


def test_a_letter_over_the_servers_size_is_reported_with_its_row(tmp_path: Path) -> None:
    with FaultServer(size_limit=3000, auth={"ana": PASSWORD}, pipelining=True) as server:
        config = write_project(tmp_path, server.port, LOGIN)
        with_long_letter(config)
        result = run(config, "validate", "--server")
    assert result.exit_code == 2, result.output
    assert f"127.0.0.1:{server.port}: no encryption, logged in as ana, SIZE 3,000 octets" in result.output
    assert "SMTPUTF8 yes, PIPELINING yes" in result.output
    assert "contacts.csv:3" in result.output and "over the limit of" in result.output
    assert "contacts.csv:2" not in result.output
    assert server.logins == ["ana"] and server.commands["AUTH"] == 1
    assert server.commands["MAIL"] == 0 and not server.messages


def test_without_server_the_same_letter_is_fine(tmp_path: Path) -> None:
    with FaultServer(size_limit=3000) as server:
        config = write_project(tmp_path, server.port, "")
        with_long_letter(config)
        result = run(config, "validate")
    assert result.exit_code == 0, result.output
    assert server.connections == 0


def test_a_server_that_accepts_every_letter(tmp_path: Path) -> None:
    ca = make_private_ca(tmp_path / "ca")
    with FaultServer(tls=ca.server_context(), require_starttls=True, auth={"ana": PASSWORD}, smtputf8=False) as server:
        smtp = f'security = "starttls"\nca_file = "{ca.ca_cert}"\n{LOGIN}'
        config = write_project(tmp_path, server.port, smtp)
        result = run(config, "validate", "--server")
    assert result.exit_code == 0, result.output
    assert "STARTTLS, logged in as ana" in result.output
    assert "SMTPUTF8 no, PIPELINING no" in result.output
    assert "2 letters ready" in result.output and "Nothing was sent." in result.output
    assert not server.messages


def test_a_wrong_password_stops_validate(tmp_path: Path) -> None:
    with FaultServer(auth={"ana": PASSWORD}) as server:
        config = write_project(tmp_path, server.port, LOGIN)
        result = CliRunner().invoke(
            main, ["validate", "--server", "--config", str(config)], env={"CAMPAIGN_SMTP_PASSWORD": "nope"}
        )
    assert result.exit_code == 1
    assert "login refused for user 'ana'" in result.output
    assert "ready" not in result.output
    assert server.commands["AUTH"] == 1 and not server.messages


def test_the_library_lowers_the_size_limit_only_to_a_smaller_size(tmp_path: Path) -> None:
    with FaultServer(size_limit=50_000_000) as big, FaultServer(size_limit=4096) as small:
        config = load_config(write_project(tmp_path, big.port, ""))
        big_check = check_server_account(config)
        small_check = check_server_account(load_config(write_project(tmp_path, small.port, "")))
    assert big_check.size_limit == 50_000_000
    assert server_limited(config, [big_check]) is config
    assert server_limited(config, [big_check, small_check]).campaign.max_message_size == 4096
    assert not big.messages and not small.messages
