"""What a sending account logs in with: a password (environment, keyring, asked) or a token command.

``smtp.password = "keyring"`` keeps the password in the system keyring (the ``keyring``
library: macOS Keychain, Windows Credential Locker, Secret Service on Linux), stored there once
by `store_password` (``mailaction login``). ``smtp.auth = "xoauth2"`` logs in with the access
tokens ``smtp.oauth2_token_command`` prints (`oauth.TokenCommand`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .config import Config, SMTPConfig
from .errors import ConfigError
from .oauth import TokenCommand
from .smtpauth import Secret

__all__ = [
    "KEYRING_SERVICE",
    "account_secret",
    "keyring_password",
    "login_account",
    "password_required",
    "store_password",
]

KEYRING_SERVICE = "mailaction"


def _keyring_user(smtp: SMTPConfig) -> str:
    """The keyring entry of an account: its user name at its server."""
    return f"{smtp.username}@{smtp.host}:{smtp.port}"


def keyring_password(smtp: SMTPConfig) -> str:
    """The account's password from the system keyring; ConfigError when it holds none."""
    import keyring.errors  # imported here: 12 ms at the start of every command otherwise

    try:
        password = keyring.get_password(KEYRING_SERVICE, _keyring_user(smtp))
    except keyring.errors.KeyringError as exc:
        raise ConfigError(f"{smtp.address}: cannot read the system keyring: {exc}") from None
    if password is None:
        raise ConfigError(
            f"{smtp.address}: no password for {smtp.username!r} in the system keyring;"
            " run `mailaction login` to store it"
        )
    return password


def login_account(config: Config, name: str | None = None) -> SMTPConfig:
    """The account `mailaction login` keeps a password for: the one ``name``d, or the only one.

    ConfigError when there is no such account, or it has no password to keep.
    """
    accounts = config.sending_accounts
    names = ", ".join(account.label for account in accounts)
    if name is None and len(accounts) > 1:
        raise ConfigError(f"several [[smtp]] accounts: pass --account with one of: {names}")
    found = [account for account in accounts if name is None or account.label == name]
    if not found:
        raise ConfigError(f"no [[smtp]] account named {name!r} (the accounts: {names})")
    smtp = found[0]
    if smtp.auth == "xoauth2":
        raise ConfigError(
            f'{smtp.address}: smtp.auth = "xoauth2" logs in with tokens; there is no password to keep'
        )
    if not smtp.username:
        raise ConfigError(f"{smtp.address}: smtp.username is not set; there is nobody to log in as")
    return smtp


def store_password(smtp: SMTPConfig, password: str) -> None:
    """Keep the account's password in the system keyring (replacing one stored before)."""
    if not smtp.username:
        raise ConfigError(f"{smtp.address}: smtp.username is not set; there is nobody to log in as")
    import keyring.errors

    try:
        keyring.set_password(KEYRING_SERVICE, _keyring_user(smtp), password)
    except keyring.errors.KeyringError as exc:
        raise ConfigError(f"{smtp.address}: cannot write to the system keyring: {exc}") from None


def account_secret(smtp: SMTPConfig, ask: Callable[[], str | None] | None = None) -> Secret:
    """What the account logs in with: a token command, the keyring's password, or ``ask()``'s.

    A password comes from the keyring, else the variable named by ``password_env``, else
    ``ask()`` (a prompt); None without a user name.
    """
    if not smtp.username:
        return None
    if smtp.auth == "xoauth2":
        assert smtp.oauth2_token_command is not None  # load_config checks it
        return TokenCommand(smtp.oauth2_token_command)
    if smtp.password == "keyring":
        return keyring_password(smtp)
    if smtp.password_env and os.environ.get(smtp.password_env):
        return os.environ[smtp.password_env]
    return ask() if ask is not None else None


def password_required(smtp: SMTPConfig) -> str:
    """An ``ask`` for `account_secret` where nobody can be asked: a ConfigError saying what to set."""
    raise ConfigError(
        f"{smtp.label}: no password for {smtp.username!r}: set password_env (and that variable),"
        ' or password = "keyring" and run `mailaction login`'
    )
