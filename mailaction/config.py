"""Reads mailaction.toml into typed, frozen settings with defaults."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

CONFIG_NAME = "mailaction.toml"
EXAMPLE_CONFIG_NAME = "config.example.toml"

_UNITS = {
    "s": 1, "sec": 1, "second": 1,
    "m": 60, "min": 60, "minute": 60,
    "h": 3600, "hr": 3600, "hour": 3600,
    "d": 86400, "day": 86400,
}  # fmt: skip
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+?)s?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Rate:
    """A number of letters per period, e.g. 600 per 60 seconds."""

    count: float
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    def __str__(self) -> str:
        unit = {1: "s", 60: "min", 3600: "hour", 86400: "day"}.get(int(self.seconds), "s")
        count = int(self.count) if float(self.count).is_integer() else self.count
        return f"{count}/{unit}"


def parse_rate(text: str) -> Rate:
    """Parse "10/s", "600/min", "2000/hour" or "5000/day"; ValueError otherwise."""
    match = _RATE.fullmatch(text)
    if not match or match.group(2).lower() not in _UNITS or float(match.group(1)) <= 0:
        raise ValueError(f'{text!r} is not a rate; write it like "10/s", "600/min" or "2000/hour"')
    return Rate(float(match.group(1)), _UNITS[match.group(2).lower()])


@dataclass(frozen=True)
class SMTPConfig:
    """[smtp]: where and how to connect."""

    host: str = "127.0.0.1"
    port: int = 1025
    security: str = "none"  # "starttls" | "ssl" | "none"
    username: str | None = None
    password_env: str | None = None
    verify_certificates: bool = True
    ca_file: Path | None = None  # a private CA's certificates (PEM), to verify the server with
    helo_name: str | None = None  # the name said in EHLO; this machine's name when unset
    password: str | None = None  # "keyring": the password is kept in the system keyring
    auth: str = "password"  # "password" | "xoauth2"
    oauth2_token_command: str | None = None  # prints a fresh access token (auth = "xoauth2")
    # One of several accounts ([[smtp]] given more than once): its name in reports, its own
    # limits (instead of [sending]'s), and the only From address it may send as, if any.
    name: str | None = None
    from_address: str | None = None  # the key is "from"
    rate: Rate | None = None
    daily_limit: int | None = None
    concurrency: int | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def label(self) -> str:
        """The account's name: ``name``, else the user at the server, else the server."""
        if self.name:
            return self.name
        return f"{self.username}@{self.address}" if self.username else self.address


@dataclass(frozen=True)
class SendingConfig:
    """[sending]: how fast and how persistently to send."""

    rate: Rate | None = None
    per_domain_rate: Rate | None = None
    concurrency: int = 4
    max_retries: int = 3
    retry_delay: float = 2.0
    timeout: float = 30.0
    max_messages_per_connection: int = 100
    daily_limit: int | None = None
    pause_after_failures: int = 10  # 0 never pauses


@dataclass(frozen=True)
class CampaignConfig:
    """[campaign]: what to send to whom, and where to keep the record."""

    name: str = "campaign"
    template: Path | None = None
    contacts: Path | None = None
    log: Path | str | None = None  # a SQLite file, or a "postgresql://..." database URL
    id_column: str = "email"
    contacts_sheet: str | int | None = None  # a workbook's sheet: its name, or its number from 1
    contacts_header_row: int | None = None  # the row holding the column names
    attachments: Path | None = None  # a folder contact values may name attachments in
    max_message_size: int = 10_000_000
    check_deliverability: bool = False
    keep_letters_days: float | None = None  # delete stored letter texts after this many days
    # Deliverability (docs/deliverability.md): one-click unsubscribe headers, when set; the
    # suppression list, by default beside the delivery log.
    unsubscribe_url: str | None = None  # a Jinja template per contact: "https://.../{{ token }}"
    unsubscribe_mailto: str | None = None
    suppression: Path | None = None


@dataclass(frozen=True)
class DKIMConfig:
    """[dkim]: sign each letter for ``domain`` with the key at ``private_key`` (never printed)."""

    selector: str | None = None
    domain: str | None = None
    private_key: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.private_key is not None


@dataclass(frozen=True)
class IMAPConfig:
    """[imap]: the mailbox where bounces arrive (`mailaction bounces`); always over TLS."""

    host: str | None = None
    port: int | None = None  # 993 for "ssl", 143 for "starttls"
    security: str = "ssl"  # "ssl" | "starttls"
    username: str | None = None
    password_env: str | None = None
    folder: str = "INBOX"
    verify_certificates: bool = True

    @property
    def address(self) -> str:
        port = self.port or (993 if self.security == "ssl" else 143)
        return f"{self.host}:{port}"


@dataclass(frozen=True)
class Config:
    """All settings; ``source`` is the file they came from, if any."""

    smtp: SMTPConfig = field(default_factory=SMTPConfig)
    sending: SendingConfig = field(default_factory=SendingConfig)
    campaign: CampaignConfig = field(default_factory=CampaignConfig)
    source: Path | None = None
    dkim: DKIMConfig = field(default_factory=DKIMConfig)
    imap: IMAPConfig = field(default_factory=IMAPConfig)
    accounts: tuple[SMTPConfig, ...] = ()  # every [[smtp]] account; () for one [smtp] table

    @property
    def sending_accounts(self) -> tuple[SMTPConfig, ...]:
        """The accounts letters go out through: the [[smtp]] accounts, or the one [smtp]."""
        return self.accounts or (self.smtp,)


def _typed(kind: type, *, optional: bool = False, positive: bool = False) -> Callable[[Any], Any]:
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}

    def check(value: Any) -> Any:
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ValueError(f"must be {names[kind]}, not {value!r}")
        if positive and value <= 0:
            raise ValueError(f"must be greater than 0, not {value!r}")
        return value

    return check


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(map(repr, choices))}, not {value!r}")
        return str(value)

    return check


def _rate(value: Any) -> Rate:
    if not isinstance(value, str):
        raise ValueError(  # noqa: TRY004 - load_config turns ValueError into the one-line message
            f'must be text like "10/s", "600/min" or "2000/hour", not {value!r}'
        )
    return parse_rate(value)


def _non_negative(kind: type) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        value = _typed(kind)(value)
        if value < 0:
            raise ValueError(f"must be 0 or more, not {value!r}")
        return value

    return check


def _text(value: Any) -> str:
    text: str = _typed(str)(value)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _sheet(value: Any) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"must be a sheet's name or its number from 1, not {value!r}")
        return value
    return _text(value)


def _https_url(value: Any) -> str:
    url = _text(value)
    # RFC 8058: one-click unsubscribe is an HTTPS POST. Spaces may sit inside {{ ... }}.
    if not url.startswith("https://") or re.search(r"[<>\x00-\x1f\x7f]", url):
        raise ValueError(f"must be an https:// URL (a template) without <, > or line breaks, not {url!r}")
    return url


def _mailto(value: Any) -> str:
    address = _text(value)
    if not re.fullmatch(r"(mailto:)?[^\s<>@?]+@[^\s<>@?]+", address):
        raise ValueError(f"must be an address like unsubscribe@example.org, not {address!r}")
    return address


def _helo_name(value: Any) -> str:
    name = _text(value)
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]", name):
        raise ValueError(f"must be a host name like mail.example.org (or an [address]), not {name!r}")
    return name


def _keyring_only(value: Any) -> str:
    if value != "keyring":  # the value is never echoed: it may be a password written here
        raise ValueError(
            'must be "keyring"; a password is never written in the config: run `mailaction login`'
            " to keep it in the system keyring, or name an environment variable in password_env"
        )
    return "keyring"


def _port(value: Any) -> int:
    port: int = _typed(int)(value)
    if not 1 <= port <= 65535:
        raise ValueError(f"must be a port number from 1 to 65535, not {port!r}")
    return port


_str, _pos_int, _pos_float, _bool = _typed(str), _typed(int, positive=True), _typed(float, positive=True), _typed(bool)
_SCHEMA: dict[str, tuple[type, dict[str, Callable[[Any], Any]]]] = {
    "smtp": (SMTPConfig, {
        "host": _text, "port": _port, "security": _choice("starttls", "ssl", "none"),
        "username": _str, "password_env": _str, "verify_certificates": _bool, "ca_file": _text,
        "helo_name": _helo_name, "password": _keyring_only,
        "auth": _choice("password", "xoauth2"), "oauth2_token_command": _text,
        "name": _text, "from": _mailto, "rate": _rate, "daily_limit": _pos_int,
        "concurrency": _pos_int,
    }),
    "sending": (SendingConfig, {
        "rate": _rate, "per_domain_rate": _rate, "concurrency": _pos_int,
        "max_retries": _non_negative(int), "retry_delay": _non_negative(float),
        "timeout": _pos_float, "max_messages_per_connection": _pos_int, "daily_limit": _pos_int,
        "pause_after_failures": _non_negative(int),
    }),
    "campaign": (CampaignConfig, {
        "name": _text, "template": _text, "contacts": _text, "log": _text, "id_column": _text,
        "contacts_sheet": _sheet, "contacts_header_row": _pos_int, "attachments": _text,
        "max_message_size": _pos_int, "check_deliverability": _bool,
        "keep_letters_days": _pos_float,
        "unsubscribe_url": _https_url, "unsubscribe_mailto": _mailto, "suppression": _text,
    }),
    "dkim": (DKIMConfig, {"selector": _text, "domain": _text, "private_key": _text}),
    "imap": (IMAPConfig, {
        "host": _text, "port": _port, "security": _choice("ssl", "starttls"), "username": _text,
        "password_env": _str, "folder": _text, "verify_certificates": _bool,
    }),
}  # fmt: skip
_FIELD_NAMES = {"from": "from_address"}  # keys that are Python keywords
_PATH_KEYS = {
    "smtp": ("ca_file",),
    "campaign": ("template", "contacts", "log", "attachments", "suppression"),
    "dkim": ("private_key",),
}


def find_config(cwd: Path | None = None) -> Path | None:
    """The default config: ./mailaction.toml, else ./config.example.toml (inside the repository)."""
    cwd = cwd or Path.cwd()
    for name in (CONFIG_NAME, EXAMPLE_CONFIG_NAME):
        if (cwd / name).is_file():
            return cwd / name
    return None


def load_config(path: Path | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read ``path`` (or use defaults when None) and apply overrides such as ``{"template": Path}``.

    Override keys are campaign keys (template, contacts, log, name); override paths are
    taken as given, config paths relative to the config file.
    """
    data: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        base = path.resolve().parent
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read config file: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    where = str(path) if path else "config"
    sections: dict[str, Any] = {}
    accounts = data.pop("smtp", None)
    if isinstance(accounts, list) and all(isinstance(account, dict) for account in accounts):
        data["smtp"] = accounts[0] if accounts else {}
    elif accounts is not None:
        data["smtp"] = accounts
        accounts = None
    for section, value in data.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {_misplaced(section)}")
        if section not in _SCHEMA:
            raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(_SCHEMA)})")
    for section in _SCHEMA:
        sections[section] = _section(section, data.get(section, {}), where, base)
    several = tuple(
        _section("smtp", account, f"{where}: [[smtp]] number {number}", base)
        for number, account in enumerate(accounts or [], start=1)
    )
    if len(several) > 1:
        _check_accounts(several, where)
    else:
        several = ()
    campaign = sections["campaign"]
    campaign = replace(campaign, **{k: v for k, v in (overrides or {}).items() if v is not None})
    if campaign.log is None:
        campaign = replace(campaign, log=base / f"{_slug(campaign.name)}.sqlite")
    if campaign.suppression is None:
        beside = base if isinstance(campaign.log, str) else campaign.log.parent
        campaign = replace(campaign, suppression=beside / "suppressed.sqlite")
    dkim = sections["dkim"]
    missing = [f"dkim.{key}" for key in _SCHEMA["dkim"][1] if getattr(dkim, key) is None]
    if 0 < len(missing) < 3:
        raise ConfigError(f"{where}: [dkim] needs selector, domain and private_key; missing {', '.join(missing)}")
    for account in several or (sections["smtp"],):
        _check_smtp_login(account, where)
    return Config(
        sections["smtp"], sections["sending"], campaign, path, dkim, sections["imap"], several
    )


def _section(section: str, table: dict[str, Any], where: str, base: Path) -> Any:
    """One section's settings, checked, as its dataclass."""
    cls, checks = _SCHEMA[section]
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in checks:
            known = ", ".join(sorted(checks))
            raise ConfigError(f"{where}: unknown key {section}.{key} (known keys: {known})")
        try:
            values[_FIELD_NAMES.get(key, key)] = checks[key](value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {section}.{key} {exc}") from None
        if key in _PATH_KEYS.get(section, ()) and not _is_url(values[key]):
            values[key] = base / values[key]
    return cls(**values)


def _check_accounts(accounts: tuple[SMTPConfig, ...], where: str) -> None:
    """Several accounts must be told apart in the log and reports."""
    seen: set[str] = set()
    for account in accounts:
        if account.label in seen:
            raise ConfigError(
                f"{where}: two [[smtp]] accounts are both called {account.label!r};"
                " give each a different name"
            )
        seen.add(account.label)


def _check_smtp_login(smtp: SMTPConfig, where: str) -> None:
    """The [smtp] keys that only make sense together."""
    if smtp.auth == "xoauth2" and not (smtp.username and smtp.oauth2_token_command):
        raise ConfigError(f'{where}: smtp.auth = "xoauth2" needs smtp.username and smtp.oauth2_token_command')
    if smtp.oauth2_token_command and smtp.auth != "xoauth2":
        raise ConfigError(f'{where}: smtp.oauth2_token_command is used only with smtp.auth = "xoauth2"')
    if smtp.password and not smtp.username:
        raise ConfigError(f'{where}: smtp.password = "keyring" needs smtp.username')


def _misplaced(key: str) -> str:
    """What is wrong with a setting written above every [section] (TOML puts it in none)."""
    owners = [section for section, (_, checks) in _SCHEMA.items() if key in checks]
    if owners:
        return f"{key} is above [{owners[0]}]; move it under [{owners[0]}]"
    if key in _SCHEMA:
        return f"{key} must be a [{key}] table"
    return f"unknown key {key} above the sections (settings go under [smtp], [sending] or [campaign])"


def _is_url(value: str) -> bool:
    """A PostgreSQL log is named by a URL, kept as written."""
    return value.startswith(("postgresql://", "postgres://"))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "campaign"


def setting_names() -> dict[str, list[str]]:
    """Every section and its keys, for documentation checks."""
    return {section: list(checks) for section, (_, checks) in _SCHEMA.items()}
