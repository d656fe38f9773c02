"""The example campaign shipped with mailaction: what `demo` sends and what `init` writes.

In an installed package the example lives in ``mailaction/example_campaign/`` (package data, see
pyproject.toml); in a source checkout it is the repository's ``config.example.toml``,
``templates/`` and ``contacts/``.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from .config import CONFIG_NAME, EXAMPLE_CONFIG_NAME, Config, load_config
from .errors import MailactionError

EXAMPLE_FOLDERS = ("templates", "contacts")
DEMO_FOLDER = "mailaction-demo"
DEMO_LOG = "demo.sqlite"
DEMO_MAILDIR = "received"


def example_folder() -> Path:
    """The folder holding the example campaign's config.example.toml, templates/ and contacts/."""
    here = Path(__file__).resolve().parent
    packaged = here / "example_campaign"
    return packaged if packaged.is_dir() else here.parent


def example_config() -> Path:
    """The example campaign's config file."""
    return example_folder() / EXAMPLE_CONFIG_NAME


def write_example(dest: Path) -> list[Path]:
    """Write a small working campaign into `dest` (created if needed): mailaction.toml, the
    letter template with its attachment, and the contact list. Writes nothing when any of
    those files exists already. Returns the files written."""
    source = example_folder()
    pairs = [(source / EXAMPLE_CONFIG_NAME, dest / CONFIG_NAME)]
    for folder in EXAMPLE_FOLDERS:
        pairs += [
            (path, dest / path.relative_to(source))
            for path in sorted((source / folder).rglob("*"))
            if path.is_file()
        ]
    existing = [target for _, target in pairs if target.exists()]
    if existing:
        raise MailactionError(
            f"{existing[0]}: already exists; choose an empty folder (nothing was written)"
        )
    for origin, target in pairs:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(origin, target)
    return [target for _, target in pairs]


def reset_demo(folder: Path) -> tuple[Path, Path]:
    """Remove what an earlier demo left in `folder` (its delivery log and received mail, nothing
    else) and return where this demo keeps them: (delivery log, Maildir)."""
    log, maildir = folder / DEMO_LOG, folder / DEMO_MAILDIR
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(maildir, ignore_errors=True)
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{log}{suffix}").unlink(missing_ok=True)
    return log, maildir


def demo_config(log: Path, port: int) -> Config:
    """The example campaign set to send to a local server on `port`, logging into `log`."""
    base = load_config(example_config(), {"log": log})
    smtp = replace(base.smtp, host="127.0.0.1", port=port, security="none", username=None)
    return replace(base, smtp=smtp)
