"""Bounces read back into the delivery log: delivery status notifications from a mailbox.

RFC 3464 notifications (multipart/report with a message/delivery-status part) are read with
the standard `email` parser; the older free-text formats of other mail servers with
flufl.bounce (GNU Mailman's bounce detectors). Auto-replies (RFC 3834, out-of-office) are
recognised and left alone. A bounce is matched to its letter by the Message-ID of the
returned letter, else by its recipient when exactly one letter of the campaign went there.
"""

from __future__ import annotations

import email
import email.message
import imaplib
import mailbox
import re
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from flufl.bounce import all_failures

from .config import IMAPConfig
from .deliverylog import DeliveryLog, State
from .errors import MailactionError
from .suppression import SuppressionList, address_key


class BouncesError(MailactionError):
    """The mailbox cannot be opened or read."""


class Kind(Enum):
    """What a message in the bounce mailbox is."""

    BOUNCE = "bounce"
    AUTO_REPLY = "auto-reply"
    OTHER = "other"


@dataclass(frozen=True)
class Bounce:
    """One recipient of one letter that a mail server could not deliver to."""

    recipient: str
    status: str  # RFC 3463 status such as "5.1.1"; "" when the notification gives none
    diagnostic: str  # the remote server's words: "smtp; 550 5.1.1 <p@example.net>: User unknown"
    message_id: str | None  # the returned letter's Message-ID, when the notification quotes it
    permanent: bool

    @property
    def code(self) -> int | None:
        """The SMTP reply code in the diagnostic (550), if any."""
        found = _SMTP_CODE.search(self.diagnostic)
        return int(found[1]) if found else None

    @property
    def reply(self) -> str:
        """What the delivery log keeps as the letter's last reply."""
        kind = "bounced" if self.permanent else "soft bounce"
        return f"{kind} {self.status or '(no status)'}: {self.diagnostic}".strip()


@dataclass(frozen=True)
class Notification:
    """What one message says: a bounce of these recipients, an auto-reply, or something else."""

    kind: Kind
    bounces: tuple[Bounce, ...] = ()


_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"(?<![\d.])([245]\d\d)(?:[ -]|$)")
_SMTP_REPLY = re.compile(r"(?<![\d.])[45]\d\d[ -][^\r\n]*")
_MESSAGE_ID = re.compile(r"^Message-ID:\s*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheit|"
    r"absence|autoreply|auto:)", re.IGNORECASE,
)  # fmt: skip
_DAEMONS = ("mailer-daemon", "postmaster")


def read_notification(message: Message) -> Notification:
    """Classify one message and, for a bounce, say which recipients failed and how."""
    report = _delivery_status(message)
    if report is not None:
        bounces = _dsn_bounces(message, report)
        return Notification(Kind.BOUNCE, bounces) if bounces else Notification(Kind.OTHER)
    if is_auto_reply(message):
        return Notification(Kind.AUTO_REPLY)
    temporary, permanent = all_failures(message)
    if not temporary and not permanent:
        return Notification(Kind.OTHER)
    text = _text(message)
    message_id = _quoted_message_id(text)
    found = (
        _text_bounce(address.decode("utf-8", "replace"), text, message_id, permanent=hard)
        for hard, addresses in ((True, permanent), (False, temporary - permanent))
        for address in sorted(addresses)
    )
    return Notification(Kind.BOUNCE, tuple(found))


def is_auto_reply(message: Message) -> bool:
    """Whether the message answers automatically (out of office, vacation), per RFC 3834 or the
    marks common servers add; delivery status notifications are not auto-replies here."""
    sender = str(message.get("From", "")).lower()
    if any(daemon in sender for daemon in _DAEMONS):
        return False
    auto = str(message.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(message.get("Precedence", "")).strip().lower()
    return (
        auto.startswith("auto-replied")
        or precedence == "auto_reply"
        or "X-Autoreply" in message
        or "X-Autorespond" in message
        or _AUTO_SUBJECT.match(str(message.get("Subject", ""))) is not None
    )


def _delivery_status(message: Message) -> Message | None:
    """The message/delivery-status part, if the message is an RFC 3464 notification."""
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            return part
    return None


def _dsn_bounces(message: Message, report: Message) -> tuple[Bounce, ...]:
    """The failed and delayed recipients of an RFC 3464 report (delivered ones are no bounce)."""
    blocks = report.get_payload()
    if not isinstance(blocks, list):  # an unparsed report: read its fields as header blocks
        text = str(blocks)
        blocks = [
            HeaderParser().parsestr(block)
            for block in re.split(r"\r?\n\r?\n", text)
            if block.strip()
        ]
    message_id = _returned_message_id(message)
    bounces = []
    for fields in blocks[1:]:  # the first block describes the report, each next one a recipient
        if not isinstance(fields, Message):
            continue
        recipient = _address_field(
            fields.get("Final-Recipient") or fields.get("Original-Recipient")
        )
        action = str(fields.get("Action", "")).strip().lower()
        status = _status(str(fields.get("Status", "")))
        if not recipient or action not in ("failed", "delayed"):
            continue
        permanent = status.startswith("5") if status else action == "failed"
        diagnostic = " ".join(str(fields.get("Diagnostic-Code", "")).split())
        bounces.append(Bounce(recipient, status, diagnostic, message_id, permanent))
    return tuple(bounces)


def _address_field(value: object) -> str:
    """The address of a Final-Recipient field such as "rfc822; p@example.net"."""
    text = str(value or "").strip()
    kind, separator, address = text.partition(";")
    return (address if separator else kind).strip().strip("<>")


def _status(value: str) -> str:
    found = _STATUS.search(value)
    return found[0] if found else ""


def _returned_message_id(message: Message) -> str | None:
    """The Message-ID of the returned letter (message/rfc822 or text/rfc822-headers part)."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            returned = part.get_payload()
            if isinstance(returned, list) and returned and isinstance(returned[0], Message):
                found = returned[0].get("Message-ID")
                if found:
                    return str(found).strip()
        elif kind == "text/rfc822-headers":
            found = _quoted_message_id(_decoded(part))
            if found:
                return found
    return None


def _quoted_message_id(text: str) -> str | None:
    found = _MESSAGE_ID.search(text)
    return found[1] if found else None


def _text(message: Message) -> str:
    """Every text/plain part, decoded, one after the other."""
    return "\n".join(
        _decoded(part) for part in message.walk() if part.get_content_type() == "text/plain"
    )


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return payload.decode(part.get_content_charset() or "utf-8", "replace")


def _text_bounce(recipient: str, text: str, message_id: str | None, *, permanent: bool) -> Bounce:
    """A bounce found in free text: the first SMTP reply after the address is its diagnostic."""
    start = text.lower().find(recipient.lower())
    window = text[max(start, 0) : max(start, 0) + 2000]
    reply = _SMTP_REPLY.search(window)
    diagnostic = " ".join(reply[0].split()) if reply else ""
    status = _status(diagnostic)
    return Bounce(recipient, status, diagnostic, message_id, permanent=permanent)


class Mailbox(Protocol):
    """Where bounces arrive: messages by key, and a way to delete some."""

    name: str

    def messages(self) -> Iterator[tuple[str, bytes]]: ...

    def delete(self, keys: list[str]) -> None: ...

    def close(self) -> None: ...


class LocalMailbox:
    """A Maildir folder or an mbox file on disk."""

    def __init__(self, path: Path, kind: str) -> None:
        self.name = str(path)
        self._keys: dict[str, Any] = {}  # the key as text -> the mailbox's own (int for mbox)
        self._box: mailbox.Mailbox[Any]
        if kind == "maildir":
            if not (path / "cur").is_dir() or not (path / "new").is_dir():
                raise BouncesError(f"{path}: not a Maildir (it needs cur/ and new/ folders)")
            self._box = mailbox.Maildir(path, factory=None, create=False)
        else:
            if not path.is_file():
                raise BouncesError(f"{path}: no such mbox file")
            self._box = mailbox.mbox(path, create=False)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        """Every message, oldest first where the format says."""
        try:
            for key in sorted(self._box.keys(), key=str):
                self._keys[str(key)] = key
                yield str(key), self._box.get_bytes(key)
        except (OSError, mailbox.Error) as exc:
            raise BouncesError(f"{self.name}: cannot read the mailbox: {exc}") from None

    def delete(self, keys: list[str]) -> None:
        """Remove these messages."""
        box = self._box
        try:
            box.lock()
            try:
                for key in keys:
                    box.discard(self._keys[key])
                box.flush()
            finally:
                box.unlock()
        except (OSError, mailbox.Error) as exc:
            raise BouncesError(f"{self.name}: cannot delete from the mailbox: {exc}") from None

    def close(self) -> None:
        """Release the mailbox."""
        self._box.close()


class IMAPMailbox:
    """A folder on an IMAP server, over TLS (implicit, or STARTTLS before logging in)."""

    def __init__(self, settings: IMAPConfig, password: str, *, timeout: float = 30.0) -> None:
        assert settings.host is not None and settings.username is not None
        self.name = f"{settings.address}/{settings.folder}"
        self._folder = _quoted(settings.folder)
        self._where = settings.address
        host, port = settings.host, int(settings.address.rpartition(":")[2])
        context = ssl.create_default_context()
        if not settings.verify_certificates:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        step = "connect"
        self._imap: imaplib.IMAP4
        try:
            if settings.security == "ssl":
                self._imap = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=timeout)
            else:
                self._imap = imaplib.IMAP4(host, port, timeout=timeout)
                step = "STARTTLS"
                self._imap.starttls(context)
            step = "login"
            self._imap.login(settings.username, password)
            step = f"select {settings.folder}"
            # Read-only until something is to be deleted: reading cannot change the mailbox.
            self._check(self._imap.select(self._folder, readonly=True), step)
        except ssl.SSLCertVerificationError as exc:
            raise BouncesError(
                f"{self._where}: the server's certificate cannot be verified ({exc.verify_message});"
                " set imap.verify_certificates = false only for a server you trust"
            ) from None
        except (OSError, imaplib.IMAP4.error) as exc:
            raise BouncesError(f"{self._where}: {step} failed: {_imap_reason(exc)}") from None

    def _check(self, response: tuple[str, list[Any]], step: str) -> list[Any]:
        status, data = response
        if status != "OK":
            raise BouncesError(f"{self._where}: {step} refused: {_imap_reason(data)}")
        return data

    def messages(self) -> Iterator[tuple[str, bytes]]:
        """Every message of the folder, by UID; read without marking it seen."""
        try:
            uids = self._check(self._imap.uid("SEARCH", "ALL"), "search")[0].split()
            for uid in uids:
                data = self._check(self._imap.uid("FETCH", uid, "(BODY.PEEK[])"), "fetch")
                yield uid.decode("ascii"), next(item[1] for item in data if isinstance(item, tuple))
        except (OSError, imaplib.IMAP4.error) as exc:
            raise BouncesError(
                f"{self._where}: reading the mailbox failed: {_imap_reason(exc)}"
            ) from None

    def delete(self, keys: list[str]) -> None:
        """Flag these messages deleted and expunge them."""
        if not keys:
            return
        try:
            self._check(self._imap.select(self._folder), "select for deleting")
            self._check(self._imap.uid("STORE", ",".join(keys), "+FLAGS", "(\\Deleted)"), "delete")
            self._check(self._imap.expunge(), "expunge")
        except (OSError, imaplib.IMAP4.error) as exc:
            raise BouncesError(f"{self._where}: deleting failed: {_imap_reason(exc)}") from None

    def close(self) -> None:
        """Log out."""
        try:
            self._imap.logout()
        except (OSError, imaplib.IMAP4.error):
            pass  # the connection is gone already; nothing is left to release


def _quoted(folder: str) -> str:
    """An IMAP quoted string, so folder names with spaces work."""
    escaped = folder.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _imap_reason(detail: object) -> str:
    """A server reply or error as one line of text."""
    if isinstance(detail, list):
        detail = b" ".join(item for item in detail if isinstance(item, bytes))
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    return " ".join(str(detail).split()) or "no reason given"


@dataclass
class BounceSummary:
    """What reading a mailbox changed; a second reading of the same mailbox changes nothing."""

    messages: int = 0
    bounce_messages: int = 0
    auto_replies: int = 0
    hard: int = 0  # letters newly marked `bounced`
    soft: int = 0  # soft bounces newly noted on sent letters
    already: int = 0  # bounces the log already held
    unmatched: int = 0  # bounces of letters this campaign's log does not hold as sent
    suppressed: int = 0  # addresses newly put on the suppression list
    deleted: int = 0
    bounced: list[str] = field(default_factory=list)  # contact ids newly bounced


def read_bounces(
    source: Mailbox,
    log: DeliveryLog,
    suppression: SuppressionList | None,
    *,
    delete_processed: bool = False,
) -> BounceSummary:
    """Read every message of ``source`` into the log: hard bounces make letters `bounced` and
    their addresses suppressed; soft bounces are noted. With ``delete_processed``, the
    notifications whose bounces all matched a letter are deleted from the mailbox."""
    summary = BounceSummary()
    found: list[tuple[str, Notification]] = []
    for key, data in source.messages():
        summary.messages += 1
        notification = read_notification(email.message_from_bytes(data))
        if notification.kind is Kind.AUTO_REPLY:
            summary.auto_replies += 1
        elif notification.kind is Kind.BOUNCE:
            summary.bounce_messages += 1
            found.append((key, notification))
    matches = _match(log, [bounce for _, notification in found for bounce in notification.bounces])
    for contact_id, bounce in _worst(matches).items():
        if not log.record_bounce(contact_id, bounce.code, bounce.reply, permanent=bounce.permanent):
            summary.already += 1
        elif bounce.permanent:
            summary.hard += 1
            summary.bounced.append(contact_id)
        else:
            summary.soft += 1
    for bounce, matched in matches:
        if matched is None:
            summary.unmatched += 1
        elif bounce.permanent and suppression is not None:
            summary.suppressed += suppression.add(
                bounce.recipient, f"bounce {bounce.status}: {log.campaign}"
            )
    if delete_processed:
        applied = {id(bounce) for bounce, contact_id in matches if contact_id is not None}
        done = [
            key for key, notice in found if all(id(bounce) in applied for bounce in notice.bounces)
        ]
        source.delete(done)
        summary.deleted = len(done)
    return summary


def _match(log: DeliveryLog, bounces: list[Bounce]) -> list[tuple[Bounce, str | None]]:
    """Each bounce with the contact id of its letter (None when none matches), in one pass."""
    by_id: dict[str, str] = {}
    by_recipient: dict[str, list[str]] = {}
    wanted_ids = {bounce.message_id for bounce in bounces if bounce.message_id}
    wanted_recipients = {address_key(bounce.recipient) for bounce in bounces}
    for entry in log.entries((State.SENT, State.UNCERTAIN, State.BOUNCED)):
        if entry.message_id in wanted_ids:
            by_id[entry.message_id] = entry.contact_id
        for recipient in entry.recipients:
            key = address_key(recipient)
            if key in wanted_recipients:
                by_recipient.setdefault(key, []).append(entry.contact_id)
    matches: list[tuple[Bounce, str | None]] = []
    for bounce in bounces:
        contact_id: str | None = by_id.get(bounce.message_id or "")
        if contact_id is None and not bounce.message_id:
            # Only when one letter alone went there: many supporters' letters to one official
            # share a recipient, and one bounce must not mark them all.
            candidates = by_recipient.get(address_key(bounce.recipient), [])
            contact_id = candidates[0] if len(candidates) == 1 else None
        matches.append((bounce, contact_id))
    return matches


def _worst(matches: Iterable[tuple[Bounce, str | None]]) -> dict[str, Bounce]:
    """Per letter, its first hard bounce, else its last soft one (mailbox order)."""
    chosen: dict[str, Bounce] = {}
    for bounce, contact_id in matches:
        if contact_id is None:
            continue
        current = chosen.get(contact_id)
        if current is None or not current.permanent:
            chosen[contact_id] = bounce
    return chosen
