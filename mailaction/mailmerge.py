"""Coming from mailmerge: a mailmerge folder becomes a mailaction campaign that sends the same letters."""

from __future__ import annotations

import configparser
import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .config import CONFIG_NAME
from .errors import ConfigError

TEMPLATE_NAME = "mailmerge_template.txt"
DATABASE_NAME = "mailmerge_database.csv"
SERVER_NAME = "mailmerge_server.conf"
# mailmerge's security names → mailaction's; PLAIN logs in without encryption, as "none" does.
SECURITY = {None: "none", "never": "none", "plain": "none", "ssl/tls": "ssl", "starttls": "starttls"}
PASSWORD_ENV = "SMTP_PASSWORD"


@dataclass(frozen=True)
class MailmergeServer:
    """The [smtp_server] section of mailmerge_server.conf."""

    host: str
    port: int
    security: str  # mailaction's name: "ssl", "starttls" or "none"
    username: str | None
    ratelimit: int  # letters per minute; 0 = unlimited


def read_server_config(path: Path) -> MailmergeServer:
    """Read mailmerge_server.conf as mailmerge does; ConfigError naming the file and the key."""
    parser = configparser.RawConfigParser()
    try:
        with path.open(encoding="utf-8") as file:
            parser.read_file(file)
        section = "smtp_server"
        host = parser.get(section, "host")
        port = parser.getint(section, "port")
        security = parser.get(section, "security", fallback=None)
        username = parser.get(section, "username", fallback=None)
        ratelimit = parser.getint(section, "ratelimit", fallback=0)
    except FileNotFoundError:
        raise ConfigError(f"{path}: mailmerge server config not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except (configparser.Error, ValueError) as exc:
        raise ConfigError(f"{path}: {' '.join(str(exc).split())}") from None
    key = security.lower() if security else None
    if key == "xoauth":
        raise ConfigError(f"{path}: security XOAUTH is not supported; use STARTTLS or SSL/TLS")
    if key not in SECURITY:
        raise ConfigError(f"{path}: unrecognized security type: {security!r}")
    if ratelimit < 0:
        raise ConfigError(f"{path}: ratelimit must be 0 (unlimited) or more letters per minute")
    return MailmergeServer(host, port, SECURITY[key], username, ratelimit)


def convert_mailmerge(src: Path, dest: Path | None = None) -> Path:
    """Write ``dest``/mailaction.toml (``dest`` defaults to ``src``) that sends the letters the
    mailmerge folder ``src`` sends; its template and database stay where they are, so relative
    attachments and includes keep working. Returns the config's path."""
    dest = dest or src
    template, database = src / TEMPLATE_NAME, src / DATABASE_NAME
    for path in (template, database):
        if not path.is_file():
            raise ConfigError(f"{path}: not found; is {src} a mailmerge folder?")
    server = read_server_config(src / SERVER_NAME)
    config_path = dest / CONFIG_NAME
    if config_path.exists():
        raise ConfigError(f"{config_path}: already exists; remove it or choose another folder")
    dest.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Converted from the mailmerge folder " + _toml(str(src.absolute())),
        "[campaign]",
        f"name = {_toml(src.absolute().name or 'campaign')}",
        f"template = {_toml(_relative(template, dest))}",
        f"contacts = {_toml(_relative(database, dest))}",
        f"id_column = {_toml(_id_column(database))}",
        "",
        "[smtp]",
        f"host = {_toml(server.host)}",
        f"port = {server.port}",
        f"security = {_toml(server.security)}",
    ]
    if server.username:
        lines += [
            f"username = {_toml(server.username)}",
            "# The password is read from this environment variable, or asked for.",
            f"password_env = {_toml(PASSWORD_ENV)}",
        ]
    lines += ["", "[sending]"]
    if server.ratelimit:
        lines.append(f'rate = "{server.ratelimit}/min"')
    else:
        lines.append("# No rate limit, as mailmerge's ratelimit = 0. Example: rate = \"30/min\"")
    config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config_path


def _id_column(database: Path) -> str:
    """The column that names each letter's contact: "email" when there is one (any case)."""
    try:
        with database.open(encoding="utf-8-sig", newline="") as file:
            header = next(csv.reader(file), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{database}: cannot read: {exc}") from None
    columns = [column.strip() for column in header]
    for wanted in ("email", "e-mail", "mail"):
        for column in columns:
            if column.lower() == wanted:
                return column
    mail = [column for column in columns if "mail" in column.lower()]
    if mail:
        return mail[0]
    if not columns:
        raise ConfigError(f"{database}: no header row")
    return columns[0]


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path.absolute(), start.absolute())


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these)."""
    return json.dumps(text, ensure_ascii=False)
