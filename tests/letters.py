"""Small hand-made letters for sender tests: real `Letter` records with simple bytes."""

from __future__ import annotations

from mailaction.message import Letter

SENDER = "campaign@example.org"


def letter(
    n: int,
    *,
    recipients: tuple[str, ...] = (),
    sender: str = SENDER,
    body: str = "",
    smtputf8: bool = False,
) -> Letter:
    """Letter number ``n`` to ``p<n>@example.org`` (or ``recipients``), with a line starting "."."""
    recipients = recipients or (f"p{n}@example.org",)
    message_id = f"<{n}@campaign.example.org>"
    data = (
        f"From: {sender}\r\nTo: {', '.join(recipients)}\r\nSubject: Letter {n}\r\n"
        f"Message-ID: {message_id}\r\n\r\nHello {n}.\r\n.a line that starts with a dot\r\n{body}"
    ).encode()
    return Letter(
        n + 2, f"p{n}@example.org", sender, recipients, f"Letter {n}", message_id, f"f{n}", data,
        smtputf8,
    )  # fmt: skip


def letters(count: int) -> list[Letter]:
    """Letters 0 .. count-1."""
    return [letter(n) for n in range(count)]
