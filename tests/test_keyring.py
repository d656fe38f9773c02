"""smtp.password = "keyring": `mailaction login` keeps the password there, send reads it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from click.testing import CliRunner
from keyring.backend import KeyringBackend

from mailaction.accounts import KEYRING_SERVICE, keyring_password
from mailaction.cli import main
from mailaction.config import load_config
from tests.filekeyring import FileKeyring
from tests.smtpserver import FaultServer
from tests.test_security import PASSWORD, everything_written, write_project

ROOT = Path(__file__).resolve().parent.parent
KEYRING = 'username = "ana"\npassword = "keyring"'


@pytest.fixture
def test_keyring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileKeyring]:
    """A file-backed keyring in place of the system's, for this test."""
    previous: KeyringBackend = keyring.get_keyring()
    backend = FileKeyring(tmp_path_factory.mktemp("keyring") / "keyring.json")
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_login_keeps_the_password_and_send_reads_it(tmp_path: Path, test_keyring: FileKeyring) -> None:
    with FaultServer(auth={"ana": PASSWORD}) as server:
        config = write_project(tmp_path, server.port, KEYRING)
        stored = CliRunner().invoke(main, ["login", "--config", str(config)], input=PASSWORD + "\n")
        assert stored.exit_code == 0, stored.output
        assert keyring_password(load_config(config).smtp) == PASSWORD
        sent = CliRunner().invoke(main, ["send", "--yes", "--config", str(config)])
        assert sent.exit_code == 0, sent.output
    assert server.logins == ["ana"] * server.connections and len(server.messages) == 2
    assert "kept the password for ana" in stored.output.lower()
    assert PASSWORD not in stored.output
    assert PASSWORD not in sent.output
    assert PASSWORD.encode() not in everything_written(tmp_path)


def test_the_prompt_hides_the_password(tmp_path: Path, test_keyring: FileKeyring) -> None:
    config = write_project(tmp_path, 1025, KEYRING)
    stored = CliRunner().invoke(main, ["login", "--config", str(config)], input=PASSWORD + "\n")
    assert stored.exit_code == 0, stored.output
    assert PASSWORD not in stored.output  # click echoes nothing of a hidden input
    assert test_keyring.get_password(KEYRING_SERVICE, "ana@127.0.0.1:1025") == PASSWORD


def test_login_hints_at_the_setting_when_the_config_does_not_use_the_keyring(
    tmp_path: Path, test_keyring: FileKeyring
) -> None:
    config = write_project(tmp_path, 1025, 'username = "ana"')
    stored = CliRunner().invoke(main, ["login", "--config", str(config)], input="pw\n")
    assert stored.exit_code == 0, stored.output
    assert 'Set smtp.password = "keyring"' in stored.output


def test_an_empty_keyring_says_to_run_login(tmp_path: Path, test_keyring: FileKeyring) -> None:
    with FaultServer(auth={"ana": PASSWORD}) as server:
        config = write_project(tmp_path, server.port, KEYRING)
        sent = CliRunner().invoke(main, ["send", "--yes", "--config", str(config)])
    assert sent.exit_code == 2
    assert "no password for 'ana' in the system keyring; run `mailaction login`" in sent.output
    assert "Traceback" not in sent.output
    assert server.connections == 0


@pytest.mark.parametrize(
    ("smtp", "message"),
    [
        ('username = "a"\nauth = "xoauth2"\noauth2_token_command = "x"', "there is no password to keep"),
        ("", "smtp.username is not set"),
    ],
)
def test_login_without_a_password_to_keep_is_refused(
    tmp_path: Path, test_keyring: FileKeyring, smtp: str, message: str
) -> None:
    config = write_project(tmp_path, 1025, smtp)
    result = CliRunner().invoke(main, ["login", "--config", str(config)], input="pw\n")
    assert result.exit_code == 2
    assert message in result.output
    assert not test_keyring.path.exists()


def test_keyring_needs_a_username(tmp_path: Path) -> None:
    config = write_project(tmp_path, 1025, 'password = "keyring"')
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 2
    assert 'smtp.password = "keyring" needs smtp.username' in result.output


def test_a_subprocess_reads_the_keyring_backend_it_is_given(tmp_path: Path) -> None:
    keyring_file = tmp_path.parent / f"{tmp_path.name}-keyring.json"
    environment = {
        **os.environ,
        "PYTHON_KEYRING_BACKEND": "tests.filekeyring.FileKeyring",
        "TEST_KEYRING_FILE": str(keyring_file),
        "PYTHONPATH": str(ROOT),
    }
    with FaultServer(auth={"ana": PASSWORD}) as server:
        config = write_project(tmp_path, server.port, KEYRING)
        FileKeyring(keyring_file).set_password(KEYRING_SERVICE, f"ana@127.0.0.1:{server.port}", PASSWORD)
        sent = subprocess.run(
            [sys.executable, "-m", "mailaction", "send", "--yes", "--config", str(config)],
            env=environment, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
        )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert len(server.messages) == 2 and server.logins
    assert PASSWORD not in sent.stdout + sent.stderr


def test_login_picks_one_of_several_accounts(tmp_path: Path, test_keyring: FileKeyring) -> None:
    from tests.test_multiaccount import account, accounts_project

    config = accounts_project(
        tmp_path, [account("ana", 1025, 'username = "ana"'), account("bo", 1026, 'username = "bo"')], 1
    )
    unnamed = CliRunner().invoke(main, ["login", "--config", str(config)], input="pw\n")
    assert unnamed.exit_code == 2
    assert "several [[smtp]] accounts: pass --account with one of: ana, bo" in unnamed.output
    unknown = CliRunner().invoke(main, ["login", "--account", "cy", "--config", str(config)], input="pw\n")
    assert unknown.exit_code == 2 and "no [[smtp]] account named 'cy'" in unknown.output
    stored = CliRunner().invoke(main, ["login", "--account", "bo", "--config", str(config)], input="pw-bo\n")
    assert stored.exit_code == 0, stored.output
    assert test_keyring.get_password(KEYRING_SERVICE, "bo@127.0.0.1:1026") == "pw-bo"
    assert test_keyring.get_password(KEYRING_SERVICE, "ana@127.0.0.1:1025") is None
