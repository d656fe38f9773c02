"""The exception hierarchy, user-facing problems and exit codes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes shared by every command."""

    SUCCESS = 0
    SOME_FAILED = 1  # some letters failed or are uncertain
    INVALID = 2  # invalid input or usage; nothing was sent
    INTERRUPTED = 130  # Ctrl-C; the log is consistent and a re-run resumes


class MailactionError(Exception):
    """A problem the user can fix; ``str(error)`` is the one-line message."""

    exit_status = ExitStatus.INVALID


class ConfigError(MailactionError):
    """The configuration file is missing, malformed or has a bad value."""


class ContactsError(MailactionError):
    """The contact list cannot be read as a whole (missing, encoding, no header)."""


class TemplateError(MailactionError):
    """The letter template cannot be read or compiled."""


class AttachmentError(MailactionError):
    """A file named by an Attachment header cannot or may not be attached."""


class DeliveryLogError(MailactionError):
    """The delivery log cannot be opened or written."""


class DeliveryLogLocked(DeliveryLogError):
    """Another `send` is already using this delivery log."""


class SMTPSetupError(MailactionError):
    """The SMTP server cannot be used (connection, TLS, authentication) before any letter goes."""

    exit_status = ExitStatus.SOME_FAILED


class SendingStopped(MailactionError):
    """Sending stopped part-way (the delivery log could not be written); some letters went."""

    exit_status = ExitStatus.SOME_FAILED


class InvalidCampaign(MailactionError):
    """Validation found problems in the contacts or letters; nothing was sent."""

    def __init__(self, message: str, problems: list[Problem]) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True)
class Problem:
    """One problem with one row (or the file as a whole when ``row`` is None)."""

    source: str  # file name as the user knows it, e.g. "contacts.csv"
    row: int | None  # row number as seen in the spreadsheet (the header is row 1)
    field: str  # column or header name, e.g. "email", "To", "Attachment"; "" when none
    message: str

    def __str__(self) -> str:
        place = self.source if self.row is None else f"{self.source}:{self.row}"
        where = f" ({self.field})" if self.field else ""
        return f"{place}{where}: {self.message}"


_SHOWN_CHARS = 60


def shown(value: str) -> str:
    """A value for a one-line message: repr, truncated."""
    if len(value) <= _SHOWN_CHARS:
        return repr(value)
    return repr(value[:_SHOWN_CHARS]) + "..."
