"""One-click unsubscribe headers: off by default, rendered per contact, checked, and signed."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner

from mailaction.campaign import Campaign
from mailaction.cli import main
from mailaction.config import load_config
from mailaction.errors import ConfigError
from tests.campaigns import RecordingSink, numbered_campaign
from tests.test_dkim import received, send, signed_campaign

URL = "https://example.org/u/{{ n }}?e={{ email|urlencode }}"


def with_campaign_keys(config: Path, **settings: str) -> Path:
    text = config.read_text(encoding="utf-8")
    lines = "".join(f'{key} = "{value}"\n' for key, value in settings.items())
    config.write_text(text.replace("[campaign]\n", f"[campaign]\n{lines}", 1), encoding="utf-8")
    return config


def headers_of(config: Path) -> list[dict[str, str]]:
    return [
        {
            name: str(value)
            for name, value in email.message_from_bytes(
                letter.data, policy=email.policy.default
            ).items()
        }
        for letter in Campaign(load_config(config)).letters()
    ]


def test_off_by_default(tmp_path: Path) -> None:
    headers = headers_of(numbered_campaign(tmp_path, 1025, 2, "plain", ""))
    assert not any("List-Unsubscribe" in letter for letter in headers)


def test_url_and_mailto_give_both_headers_per_contact(tmp_path: Path) -> None:
    config = with_campaign_keys(
        numbered_campaign(tmp_path, 1025, 2, "list", ""),
        unsubscribe_url=URL, unsubscribe_mailto="unsubscribe@example.org",
    )  # fmt: skip
    headers = headers_of(config)
    assert [letter["List-Unsubscribe"] for letter in headers] == [
        f"<https://example.org/u/{n}?e=p{n}%40example.org>, <mailto:unsubscribe@example.org?subject=unsubscribe>"
        for n in range(2)
    ]
    assert all(
        letter["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for letter in headers
    )


def test_a_mailto_alone_takes_no_one_click_post(tmp_path: Path) -> None:
    config = with_campaign_keys(
        numbered_campaign(tmp_path, 1025, 1, "list", ""),
        unsubscribe_mailto="mailto:stop@example.org",
    )
    (letter,) = headers_of(config)
    assert letter["List-Unsubscribe"] == "<mailto:stop@example.org?subject=unsubscribe>"
    assert "List-Unsubscribe-Post" not in letter


def test_the_headers_arrive_signed(
    tmp_path: Path,
    sink: RecordingSink,
    dkim_keys: tuple[Path, bytes],
    dkim_dns: Callable[..., bytes | None],
) -> None:
    config = with_campaign_keys(signed_campaign(tmp_path, sink.port, dkim_keys[0]), unsubscribe_url=URL)
    send(config)
    for message in received(tmp_path / "maildir"):
        signature = dkim.DKIM(message)
        assert signature.verify(dnsfunc=dkim_dns)
        assert {b"list-unsubscribe", b"list-unsubscribe-post"} <= set(signature.include_headers)
        assert not dkim.verify(
            message.replace(b"https://example.org/u/", b"https://example.net/u/"), dnsfunc=dkim_dns
        )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "https://example.org/u/{{ token }}",
            "campaign.unsubscribe_url:1 (List-Unsubscribe): uses {{ token }}, which is not a column",
        ),
        (
            "https://example.org/u/{{ email }} {{ n }}",
            "contacts.csv:2 (List-Unsubscribe): the unsubscribe URL has a space",
        ),
    ],
)
def test_validate_names_a_bad_url_and_where_it_is(tmp_path: Path, url: str, problem: str) -> None:
    config = with_campaign_keys(
        numbered_campaign(tmp_path, 1025, 2, "list", ""), unsubscribe_url=url
    )
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 2
    assert problem in result.output


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "unsubscribe_url",
            "http://example.org/u",
            "campaign.unsubscribe_url must be an https:// URL",
        ),
        ("unsubscribe_mailto", "not an address", "campaign.unsubscribe_mailto must be an address"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, key: str, value: str, message: str) -> None:
    config = with_campaign_keys(numbered_campaign(tmp_path, 1025, 1, "list", ""), **{key: value})
    with pytest.raises(ConfigError, match=message):
        load_config(config)
