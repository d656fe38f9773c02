"""Which file an Attachment header names, and whether a letter may attach it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import AttachmentError, shown


def find_attachment(written: str, literal: bool, base_dir: Path, folder: Path | None = None) -> Path:
    """The file an Attachment header names; AttachmentError saying why it cannot be attached.

    A path the template author wrote (``literal``) may point anywhere, with ``~`` and ``$VARS``
    expanded, as in mailmerge. A path printed by an expression may hold contact data: it must
    be relative and lead (symlinks followed) to a regular file inside ``base_dir`` (the
    template's folder) or ``folder`` (the campaign's attachments folder).
    """
    text = written.strip()
    if not text:
        raise AttachmentError("the Attachment header is empty; name a file or remove the header")
    if literal:
        path = Path(os.path.expandvars(os.path.expanduser(text)))
        path = path if path.is_absolute() else base_dir / path
    else:
        path = base_dir / text
        places = "the template's folder" + (" or the attachments folder" if folder else "")
        if Path(text).is_absolute():
            raise AttachmentError(
                f"attachment {shown(written)} comes from the contact list and is an absolute path; "
                f"a value may only name a file inside {places}, relative to the template"
            )
        if not _inside(path, base_dir, folder):
            raise AttachmentError(
                f"attachment {shown(written)} comes from the contact list and is outside {places}; "
                "only files there can be attached by a value"
            )
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise AttachmentError(f"attachment {shown(written)} not found (looked for {path})") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        raise AttachmentError(f"attachment {shown(written)} cannot be read: {reason}") from None
    if stat.S_ISDIR(info.st_mode):
        raise AttachmentError(f"attachment {shown(written)} is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise AttachmentError(f"attachment {shown(written)} is not a regular file")
    if not os.access(path, os.R_OK):
        raise AttachmentError(f"attachment {shown(written)} cannot be read: permission denied")
    return path


def _inside(path: Path, base_dir: Path, folder: Path | None) -> bool:
    """True when ``path``, symlinks followed, lies inside ``base_dir`` or ``folder``."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL
        return False
    return any(real.is_relative_to(place.resolve()) for place in (base_dir, folder) if place)

