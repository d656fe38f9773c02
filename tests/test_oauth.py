"""AUTH XOAUTH2 with a token command: refreshed once when the token expires, never written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailaction.cli import main
from mailaction.oauth import command_environment
from tests.oauthserver import TOKEN_PREFIX, OAuthServer, token_command, token_runs
from tests.test_security import PASSWORD, everything_written, write_project

USER = "campaign@example.org"


def oauth_project(folder: Path, port: int, command: str, letters: int = 20) -> Path:
    smtp = f'username = "{USER}"\nauth = "xoauth2"\noauth2_token_command = "{command}"\n'
    smtp += 'password_env = "CAMPAIGN_SMTP_PASSWORD"'
    config = write_project(folder, port, smtp)
    rows = "".join(f"p{n}@example.org,P{n}\n" for n in range(letters))
    (folder / "contacts.csv").write_text("email,name\n" + rows, encoding="utf-8")
    with config.open("a", encoding="utf-8") as settings:
        settings.write("concurrency = 3\nmax_messages_per_connection = 4\n")
    return config


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, [args[0], "--config", str(config), *args[1:]], env={"CAMPAIGN_SMTP_PASSWORD": PASSWORD}
    )


def test_a_campaign_refreshes_an_expired_token_once_and_never_writes_it(tmp_path: Path) -> None:
    helper = tmp_path.parent / f"{tmp_path.name}-token"
    command = token_command(helper)
    with OAuthServer(USER, expire_after_one_login={f"{TOKEN_PREFIX}1"}) as server:
        config = oauth_project(tmp_path, server.port, command)
        sent = invoke(config, "send", "--yes")
        assert sent.exit_code == 0, sent.output
    assert sorted(message.recipients[0] for message in server.messages) == sorted(
        f"p{n}@example.org" for n in range(20)
    )
    assert token_runs(helper) == 2  # the first token, then one refresh for every connection
    assert server.tokens_accepted[0] == f"{TOKEN_PREFIX}1"
    assert set(server.tokens_accepted[1:]) == {f"{TOKEN_PREFIX}2"}
    assert set(server.tokens_refused) == {f"{TOKEN_PREFIX}1"}
    assert any(reply.startswith("334 ") for reply in server.replies)
    assert server.commands["AUTH"] == server.connections + len(server.tokens_refused)
    outputs = [sent.output]
    for fmt in ("table", "csv", "json", "html"):
        report = invoke(config, "report", "--format", fmt, "--output", str(tmp_path / f"report.{fmt}"))
        assert report.exit_code == 0, report.output
        outputs.append(report.output)
    outputs.append(invoke(config, "show", "p3@example.org").output)
    assert "p3@example.org" in outputs[-1]
    assert TOKEN_PREFIX not in "".join(outputs)
    written = everything_written(tmp_path)
    assert b"p19@example.org" in written  # the log and the reports were read
    assert TOKEN_PREFIX.encode() not in written


def test_the_token_command_never_sees_the_password(tmp_path: Path) -> None:
    helper = tmp_path / "token"
    with OAuthServer(USER, expire_after_one_login=set()) as server:
        config = oauth_project(tmp_path, server.port, token_command(helper), letters=2)
        sent = invoke(config, "send", "--yes")
    assert sent.exit_code == 0, sent.output
    environment = json.loads((helper / "environment.json").read_text(encoding="utf-8"))
    assert "PATH" in environment
    assert "CAMPAIGN_SMTP_PASSWORD" not in environment
    assert PASSWORD not in json.dumps(environment)


def test_a_minimal_environment_keeps_paths_and_locale_only() -> None:
    kept = command_environment(
        {"PATH": "/usr/bin", "HOME": "/home/ana", "LC_ALL": "C.UTF-8", "XDG_CONFIG_HOME": "/c",
         "SMTP_PASSWORD": PASSWORD, "AWS_SECRET_ACCESS_KEY": "x", "PYTHONPATH": "/p"}
    )  # fmt: skip
    assert kept == {"PATH": "/usr/bin", "HOME": "/home/ana", "LC_ALL": "C.UTF-8", "XDG_CONFIG_HOME": "/c"}


def test_a_failing_token_command_says_why_and_sends_nothing(tmp_path: Path) -> None:
    with OAuthServer(USER, expire_after_one_login=set()) as server:
        config = oauth_project(tmp_path, server.port, "echo 'not logged in: run gcloud auth login' >&2; exit 3")
        sent = invoke(config, "send", "--yes")
    assert sent.exit_code == 1
    assert "smtp.oauth2_token_command failed (exit status 3): not logged in" in sent.output
    assert "Traceback" not in sent.output
    assert not server.messages and server.commands["AUTH"] == 0


def test_a_token_command_printing_more_than_a_token_is_refused(tmp_path: Path) -> None:
    with OAuthServer(USER, expire_after_one_login=set()) as server:
        config = oauth_project(tmp_path, server.port, "echo Your token is: abc")
        sent = invoke(config, "send", "--yes")
    assert sent.exit_code == 1
    assert "must print one access token and nothing else" in sent.output
    assert "abc" not in sent.output
    assert not server.messages


def test_a_refused_fresh_token_is_one_clear_error(tmp_path: Path) -> None:
    helper = tmp_path / "token"
    with OAuthServer("someone-else@example.org", expire_after_one_login=set()) as server:
        config = oauth_project(tmp_path, server.port, token_command(helper), letters=2)
        sent = invoke(config, "send", "--yes")
    assert sent.exit_code == 1
    assert f"login refused for user '{USER}'" in sent.output
    assert token_runs(helper) == 2 and server.commands["AUTH"] == 2  # the token, then a fresh one
    assert TOKEN_PREFIX not in sent.output
    assert not server.messages


def test_a_server_without_xoauth2_is_named(tmp_path: Path) -> None:
    from tests.smtpserver import FaultServer

    with FaultServer(auth={USER: PASSWORD}) as server:
        config = oauth_project(tmp_path, server.port, "echo token", letters=1)
        sent = invoke(config, "send", "--yes")
    assert sent.exit_code == 1
    assert "does not offer AUTH XOAUTH2 (it offers LOGIN, PLAIN)" in sent.output
    assert server.commands["AUTH"] == 0


@pytest.mark.parametrize(
    ("smtp", "message"),
    [
        ('username = "a"\nauth = "xoauth2"', 'smtp.auth = "xoauth2" needs smtp.username and smtp.oauth2_token_command'),
        ('auth = "xoauth2"\noauth2_token_command = "x"', "needs smtp.username"),
        ('username = "a"\noauth2_token_command = "x"', 'used only with smtp.auth = "xoauth2"'),
        ('auth = "kerberos"', "smtp.auth must be one of 'password', 'xoauth2'"),
    ],
)
def test_oauth_settings_that_do_not_fit_are_refused(tmp_path: Path, smtp: str, message: str) -> None:
    config = write_project(tmp_path, 1025, smtp)
    result = invoke(config, "validate")
    assert result.exit_code == 2
    assert message in result.output


def test_a_worker_process_gets_the_command_never_the_token() -> None:
    import pickle

    from mailaction.oauth import TokenCommand

    command = TokenCommand("printf '%s-%s' tok 42")
    assert asyncio.run(command.token()) == "tok-42"
    sent = pickle.dumps(command)
    assert b"tok-42" not in sent
    copy = pickle.loads(sent)
    assert copy.command == command.command and copy.runs == 0
