"""Test campaigns on disk and a sink that records what arrived and when."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path

from mailaction.sink import Sink, StoredMessage


class RecordingSink(Sink):
    """A sink that records each message's Message-ID and arrival time, and the arrival times
    by the domain of its first recipient."""

    def __init__(self, maildir: Path) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self.by_domain: dict[str, list[float]] = defaultdict(list)
        super().__init__(maildir, on_message=self._note)

    def _note(self, message: StoredMessage) -> None:
        now = time.monotonic()
        self.arrivals.append((now, message.message_id))
        self.by_domain[message.recipients[0].rpartition("@")[2]].append(now)

    @property
    def received(self) -> Counter[str]:
        """How many times each Message-ID arrived."""
        return Counter(message_id for _, message_id in list(self.arrivals))


def numbered_campaign(folder: Path, port: int, count: int, name: str, sending: str) -> Path:
    """A campaign of ``count`` letters to p0..p<count-1>@example.org; returns its config path."""
    (folder / "letter.txt").write_text(
        "To: Supporter {{ n }} <{{ email }}>\nFrom: Campaign <campaign@example.org>\n"
        "Subject: Letter {{ n }}\n\nDear supporter {{ n }},\n\nThank you.\n",
        encoding="utf-8",
    )
    rows = "".join(f"p{n}@example.org,{n}\n" for n in range(count))
    (folder / "contacts.csv").write_text("email,n\n" + rows, encoding="utf-8")
    config = folder / "mailaction.toml"
    config.write_text(
        f'[campaign]\nname = "{name}"\ntemplate = "letter.txt"\ncontacts = "contacts.csv"\n\n'
        f"[smtp]\nport = {port}\n\n[sending]\n{sending}\n",
        encoding="utf-8",
    )
    return config


TEMPLATE = """\
To: {{ first_name }} {{ last_name }} <{{ email }}>
From: Campaign Team <campaign@example.org>
Subject: Hello {{ first_name }}

Dear {{ first_name }},

Thank you for joining{% if town %} from {{ town }}{% endif %}.
"""

CONTACTS = """\
email,first_name,last_name,town
ana@example.org,Ana,Silva,Porto
bo@example.com,Bo,NA,
chen@example.net,Chen,Wei,Taipei
"""


def cli_project(tmp_path: Path, port: int) -> Path:
    """A campaign folder with a template, contacts and a config pointing at ``port``."""
    (tmp_path / "letter.txt").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    (tmp_path / "mailaction.toml").write_text(
        f"""
[campaign]
name = "Test action"
template = "letter.txt"
contacts = "contacts.csv"

[smtp]
host = "127.0.0.1"
port = {port}

[sending]
concurrency = 2
retry_delay = 0.01
""",
        encoding="utf-8",
    )
    return tmp_path
