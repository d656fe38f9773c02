"""Checking the sending account before a campaign: connect, secure, log in, read what it accepts.

`check_server_account` sends nothing: it says EHLO, STARTTLS (or TLS from the start), logs in
and quits, and keeps what the server offered. `server_limited` lowers the campaign's
``max_message_size`` to the server's SIZE, so validation reports each letter the server would
refuse as too large, with its row, before anything is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

from .accounts import account_secret
from .config import Config
from .sender import check_server

__all__ = ["ServerCheck", "check_server_account", "server_limited"]


@dataclass(frozen=True)
class ServerCheck:
    """What the account's server offered once connected, secured and logged in."""

    address: str
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
    smtp = config.smtp
    offer = asyncio.run(check_server(smtp, config.sending, account_secret(smtp, ask)))
    return ServerCheck(
        smtp.address, smtp.security, smtp.username, offer.size_limit, offer.smtputf8, offer.pipelining
    )


def server_limited(config: Config, check: ServerCheck) -> Config:
    """The config with campaign.max_message_size no larger than the server's SIZE."""
    limit = check.size_limit
    if not limit or limit >= config.campaign.max_message_size:
        return config
    return replace(config, campaign=replace(config.campaign, max_message_size=limit))
