"""Several [[smtp]] accounts sharing one campaign: each within its limits, each letter once."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailaction.cli import main
from mailaction.config import load_config
from mailaction.delivery import SendOptions, send_campaign
from mailaction.deliverylog import DeliveryLog
from mailaction.multiaccount import DAY
from tests.smtpserver import FaultServer
from tests.test_security import PASSWORD

TEMPLATE = "To: <{{ email }}>\nFrom: Campaign <campaign@example.org>\nSubject: Hello\n\nHello {{ n }}.\n"


def accounts_project(folder: Path, accounts: list[str], letters: int = 100) -> Path:
    """A campaign of ``letters`` letters and one [[smtp]] table per entry of ``accounts``."""
    (folder / "letter.txt").write_text(TEMPLATE, encoding="utf-8")
    rows = "".join(f"p{n}@example.org,{n}\n" for n in range(letters))
    (folder / "contacts.csv").write_text("email,n\n" + rows, encoding="utf-8")
    tables = "".join(f"[[smtp]]\n{account}\n\n" for account in accounts)
    config = folder / "mailaction.toml"
    config.write_text(
        '[campaign]\nname = "shared"\ntemplate = "letter.txt"\ncontacts = "contacts.csv"\n\n'
        f"{tables}[sending]\nretry_delay = 0.01\nmax_retries = 0\nconcurrency = 2\n",
        encoding="utf-8",
    )
    return config


def account(name: str, port: int, extra: str = "") -> str:
    return f'name = "{name}"\nhost = "127.0.0.1"\nport = {port}\n{extra}'


def recipients(*servers: FaultServer) -> Counter[str]:
    return Counter(rcpt for server in servers for message in server.messages for rcpt in message.recipients)


def test_two_accounts_share_a_campaign_within_their_daily_limits(tmp_path: Path) -> None:
    with FaultServer() as first, FaultServer() as second:
        config_path = accounts_project(
            tmp_path,
            [account("first", first.port, "daily_limit = 30"), account("second", second.port, "daily_limit = 50")],
        )
        config = load_config(config_path)
        today = send_campaign(config, SendOptions())
        assert (len(first.messages), len(second.messages)) == (30, 50)
        assert today.plan.to_send == 80 and today.plan.left_for_later == 20
        assert {r.account: r.sent for r in today.accounts} == {"first": 30, "second": 50}
        assert all("daily limit" in (r.stopped or "") for r in today.accounts)
        assert today.summary.stopped_reason is None and not today.problems
        report = CliRunner().invoke(main, ["report", "--config", str(config_path)])
        assert report.exit_code == 0, report.output
        assert "first 30, second 50" in report.output
        again = send_campaign(config, SendOptions())  # the same day: no room left
        assert again.plan.to_send == 0 and again.plan.left_for_later == 20
        tomorrow = send_campaign(config, SendOptions(now=lambda: time.time() + DAY + 60))
    assert tomorrow.plan.to_send == 20 and tomorrow.summary.sent == 20
    assert sum(r.sent for r in tomorrow.accounts) == 20
    received = recipients(first, second)
    assert len(received) == 100 and set(received.values()) == {1}
    with DeliveryLog(config.campaign.log, "shared", create=False) as log:  # type: ignore[arg-type]
        split = log.sent_by_account()
    assert sum(split.values()) == 100
    assert split == {"first": len(first.messages), "second": len(second.messages)}


def test_a_refused_account_leaves_the_queue_to_the_other(tmp_path: Path) -> None:
    with FaultServer(auth={"ana": PASSWORD}) as locked, FaultServer() as open_server:
        config_path = accounts_project(
            tmp_path,
            [
                account("locked", locked.port, 'username = "ana"\npassword_env = "WRONG_PASSWORD"'),
                account("open", open_server.port),
            ],
            letters=10,
        )
        result = CliRunner().invoke(
            main, ["send", "--yes", "--config", str(config_path)], env={"WRONG_PASSWORD": "nope"}
        )
    assert result.exit_code == 1, result.output
    assert len(open_server.messages) == 10 and not locked.messages
    assert locked.commands["AUTH"] == 1
    assert "locked: 0 sent; stopped:" in result.output and "login refused for user 'ana'" in result.output
    assert "open: 10 sent" in result.output
    assert "nope" not in result.output


def test_an_account_without_a_password_source_is_named(tmp_path: Path) -> None:
    with FaultServer(auth={"ana": PASSWORD}) as first, FaultServer() as second:
        config_path = accounts_project(
            tmp_path, [account("first", first.port, 'username = "ana"'), account("second", second.port)], 2
        )
        result = CliRunner().invoke(main, ["send", "--yes", "--config", str(config_path)])
    assert result.exit_code == 2
    assert "first: no password for 'ana'" in result.output
    assert not first.messages and not second.messages


def test_each_account_keeps_its_own_concurrency(tmp_path: Path) -> None:
    with FaultServer() as first, FaultServer() as second:
        config_path = accounts_project(
            tmp_path,
            [account("first", first.port, "concurrency = 1"), account("second", second.port, "concurrency = 3")],
            letters=40,
        )
        result = CliRunner().invoke(main, ["send", "--yes", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    assert first.most_open_connections == 1 and second.most_open_connections <= 3
    assert len(recipients(first, second)) == 40


def test_a_json_report_lists_the_split(tmp_path: Path) -> None:
    with FaultServer() as first, FaultServer() as second:
        config_path = accounts_project(
            tmp_path, [account("first", first.port, "daily_limit = 3"), account("second", second.port)], 10
        )
        sent = CliRunner().invoke(main, ["send", "--yes", "--config", str(config_path)])
        assert sent.exit_code == 0, sent.output
    report = CliRunner().invoke(main, ["report", "--format", "json", "--config", str(config_path)])
    split = json.loads(report.output)["sent_by_account"]
    assert split["first"] == 3 and split["second"] == 7


@pytest.mark.parametrize(
    ("accounts", "message"),
    [
        (['name = "a"\nport = 1025', 'name = "a"\nport = 1026'], "two [[smtp]] accounts are both called 'a'"),
        (['port = 1025', 'port = 1025\nrate = "fast"'], "[[smtp]] number 2: smtp.rate 'fast' is not a rate"),
        (['port = 1025', 'port = 1026\nfrom = "not an address"'], "smtp.from must be an address"),
    ],
)
def test_accounts_that_do_not_fit_are_refused(tmp_path: Path, accounts: list[str], message: str) -> None:
    config_path = accounts_project(tmp_path, accounts, 1)
    result = CliRunner().invoke(main, ["validate", "--config", str(config_path)])
    assert result.exit_code == 2
    assert message in result.output


def test_one_smtp_table_is_still_one_account(tmp_path: Path) -> None:
    config_path = accounts_project(tmp_path, ["port = 1025"], 1)
    config = load_config(config_path)
    assert config.accounts == () and config.sending_accounts == (config.smtp,)
    assert config.smtp.port == 1025


def test_validate_says_which_account_cannot_send_the_templates_from(tmp_path: Path) -> None:
    config_path = accounts_project(
        tmp_path,
        [
            account("ana", 1025, 'from = "ana@example.org"'),
            account("team", 1026, 'from = "Campaign@example.org"'),
        ],
        letters=3,
    )
    result = CliRunner().invoke(main, ["validate", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    assert "letter.txt (From), rows 2, 3, 4: account 'ana' may send only as ana@example.org" in result.output
    assert "account 'team'" not in result.output


def test_one_account_bound_to_its_own_address_is_checked_too(tmp_path: Path) -> None:
    config_path = accounts_project(tmp_path, ['port = 1025\nfrom = "ana@example.org"'], letters=1)
    result = CliRunner().invoke(main, ["validate", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    assert "may send only as ana@example.org" in result.output


def test_validate_server_checks_every_account_against_the_smallest_size(tmp_path: Path) -> None:
    with FaultServer(size_limit=3000) as small, FaultServer(size_limit=50_000) as large:
        config_path = accounts_project(tmp_path, [account("small", small.port), account("large", large.port)], 2)
        long_n = " ".join(["Bartholomew"] * 500)
        (tmp_path / "contacts.csv").write_text(f"email,n\na@example.org,1\nb@example.org,{long_n}\n", encoding="utf-8")
        result = CliRunner().invoke(main, ["validate", "--server", "--config", str(config_path)])
    assert result.exit_code == 2, result.output
    assert "Server small: no encryption, no login, SIZE 3,000 octets" in result.output
    assert "Server large: no encryption, no login, SIZE 50,000 octets" in result.output
    assert "contacts.csv:3" in result.output and "contacts.csv:2" not in result.output
    assert small.connections == large.connections == 1
    assert not small.messages and not large.messages


def test_several_accounts_refuse_worker_processes(tmp_path: Path) -> None:
    with FaultServer() as first, FaultServer() as second:
        config_path = accounts_project(tmp_path, [account("first", first.port), account("second", second.port)], 2)
        result = CliRunner().invoke(main, ["send", "--yes", "--workers", "2", "--config", str(config_path)])
    assert result.exit_code == 2
    assert "several [[smtp]] accounts send from one process" in result.output
    assert not first.messages and not second.messages
