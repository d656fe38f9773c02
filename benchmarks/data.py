"""Generated benchmark inputs: a contact list, a letter template, and the tools' config files.

Everything is written into a directory the caller owns; addresses use reserved domains only.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from pathlib import Path

COLUMNS = ["email", "first_name", "last_name", "town", "country", "personal_note"]
FIRST = [
    "Alena", "Ivan", "Maria", "Pavel", "Olga", "Siarhei", "Anna", "Dmitri", "Hanna", "Yuri",
    "Elena", "Zoe", "Lukas", "Ines",
]  # fmt: skip
LAST = [
    "Kovalenko", "Novik", "Sidorova", "Lebedev", "Moroz", "Zhuk", "Bondar", "Petrova", "Martin",
    "Garcia", "Schmidt",
]  # fmt: skip
TOWNS = [
    ("Lyon", "France"), ("Gdańsk", "Poland"), ("Leeds", "United Kingdom"), ("Graz", "Austria"),
    ("Vilnius", "Lithuania"), ("", "Germany"), ("Utrecht", ""), ("", ""),
]  # fmt: skip
NOTES = [
    "My grandmother was a teacher in Hrodna; I think of her every time I read about Maryia.",
    "Please let her family visit her. Nobody should be cut off like this.",
    "I have written before and I will keep writing until she is free.",
    "Je vous prie de libérer Maryia Kalesnikava sans délai.",
]
DOMAINS = ["example.org", "example.com", "example.net"]

TEMPLATE = """\
To: Minister of Foreign Affairs <minister@foreign-ministry.example.org>
From: {{ first_name }} {{ last_name }} via Free Maryia Kalesnikava <letters@example.org>
Reply-To: {{ first_name }} {{ last_name }} <{{ email }}>
Subject: Release Maryia Kalesnikava, prisoner of conscience
Content-Type: text/markdown

Dear Minister,

I am writing about **Maryia Kalesnikava**, who has been deprived of her liberty since
she was arrested on 7 September 2020. She was later sentenced to 11 years in prison
after an unfair trial. Her only "offence" was her peaceful part in the protests that
followed the disputed 2020 presidential election. She is a prisoner of conscience.

Since February 2023 she has been held incommunicado, put in punishment cells again and
again, and denied the medical care she needs.

I urge you to:

1. Make public where Maryia Kalesnikava is held and the state of her health.
2. Release her immediately and unconditionally.
3. Until she is free, let her see an independent lawyer and her family.
{% if personal_note %}
{{ personal_note }}
{% endif %}
Yours sincerely,

{{ first_name }} {{ last_name }}{% if town or country %}
{{ [town, country] | select | join(", ") }}{% endif %}
"""


def contact_rows(count: int, seed: int = 6) -> Iterator[list[str]]:
    """``count`` distinct contacts; about one in four writes a personal note."""
    rng = random.Random(seed)
    for n in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        town, country = rng.choice(TOWNS)
        note = rng.choice(NOTES) if rng.random() < 0.25 else ""
        email = f"{first.lower()}.{last.lower()}.{n}@{DOMAINS[n % len(DOMAINS)]}"
        yield [email, first, last, town, country, note]


def write_contacts(path: Path, count: int) -> Path:
    """A UTF-8 CSV of ``count`` generated contacts with a header row."""
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows(contact_rows(count))
    return path


def write_template(path: Path) -> Path:
    """The benchmark letter: like the example campaign's, in Markdown, without the attachment."""
    path.write_text(TEMPLATE, encoding="utf-8")
    return path


def write_mailaction_config(
    path: Path,
    *,
    port: int,
    template: Path,
    contacts: Path,
    log: Path | str,
    concurrency: int,
    rate: str | None = None,
) -> Path:
    """A mailaction.toml sending the campaign to 127.0.0.1:``port`` without TLS or login."""
    rate_line = f'rate = "{rate}"\n' if rate else ""
    path.write_text(
        f'[campaign]\nname = "Benchmark"\ntemplate = "{template}"\ncontacts = "{contacts}"\n'
        f'log = "{log}"\n\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n\n'
        f"[sending]\nconcurrency = {concurrency}\n{rate_line}",
        encoding="utf-8",
    )
    return path


def write_mailmerge_config(path: Path, *, port: int) -> Path:
    """A mailmerge server config for 127.0.0.1:``port``: no TLS, no login, no rate limit."""
    path.write_text(
        f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nsecurity = Never\nratelimit = 0\n",
        encoding="utf-8",
    )
    return path
