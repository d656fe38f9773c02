"""Checking the sending account before a campaign: connect, secure, log in, read what it accepts.

`check_server_account` sends nothing: it says EHLO, STARTTLS (or TLS from the start), logs in
and quits, and keeps what the server offered. `server_limited` lowers the campaign's
``max_message_size`` to the server's SIZE, so validation reports each letter the server would
refuse as too large, with its row, before anything is sent.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

from .accounts import account_secret, password_required
from .config import Config, SMTPConfig
from .sender import check_server

__all__ = ["ServerCheck", "check_server_account", "check_server_accounts", "server_limited"]


@dataclass(frozen=True)
class ServerCheck:
    """What the account's server offered once connected, secured and logged in."""

    address: str  # the server, or the account's name when there are several
    security: str  # "starttls" | "ssl" | "none"
    username: str | None  # logged in as, None without a login
    size_limit: int  # the largest message it accepts (SIZE); 0 when it names none
    smtputf8: bool
    pipelining: bool

    def describe(self) -> str:
        """One line for people: how the connection went and what the server accepts."""
        parts = [{"starttls": "STARTTLS", "ssl": "TLS"}.get(self.security, "no encryption")]
        parts.append(f"logged in as {self.username}" if self.username else "no login")
        parts.append(f"SIZE {self.size_limit:,} octets" if self.size_limit else "no SIZE limit")
        parts.append(f"SMTPUTF8 {'yes' if self.smtputf8 else 'no'}")
        parts.append(f"PIPELINING {'yes' if self.pipelining else 'no'}")
        return f"{self.address}: " + ", ".join(parts)


def check_server_account(config: Config, ask: Callable[[], str | None] | None = None) -> ServerCheck:
    """Connect to the [smtp] account, secure the connection, log in and quit; sends nothing.

    ``ask`` gives the password when it is neither in the keyring nor a token command's.
    Raises SMTPSetupError when the account cannot be used.
    """
    return _check(config, config.smtp, ask)


def check_server_accounts(
    config: Config, ask: Callable[[], str | None] | None = None
) -> list[ServerCheck]:
    """`check_server_account` for each sending account ([[smtp]] tables, or the one [smtp]).

    With several accounts each password must come from its variable or the keyring.
    """
    if not config.accounts:
        return [_check(config, config.smtp, ask)]
    return [
        _check(config, account, functools.partial(password_required, account))
        for account in config.accounts
    ]


def _check(config: Config, smtp: SMTPConfig, ask: Callable[[], str | None] | None) -> ServerCheck:
    offer = asyncio.run(check_server(smtp, config.sending, account_secret(smtp, ask)))
    return ServerCheck(
        smtp.label if config.accounts else smtp.address, smtp.security, smtp.username,
        offer.size_limit, offer.smtputf8, offer.pipelining,
    )  # fmt: skip


def server_limited(config: Config, checks: list[ServerCheck]) -> Config:
    """The config with campaign.max_message_size no larger than any server's SIZE."""
    limits = [check.size_limit for check in checks if check.size_limit]
    if not limits or min(limits) >= config.campaign.max_message_size:
        return config
    return replace(config, campaign=replace(config.campaign, max_message_size=min(limits)))
