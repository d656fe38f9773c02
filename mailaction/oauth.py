"""OAuth2 access tokens for AUTH XOAUTH2, printed by a command the organiser chose.

The command (``smtp.oauth2_token_command``) works as msmtp's ``passwordeval``: it prints a fresh
access token on its standard output, e.g. ``gcloud auth print-access-token`` or ``oauth2l
fetch``. The token stays in memory: it is never logged, stored or printed. The command runs
with a minimal environment, so it never sees the SMTP password or other secrets of this process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import weakref

from .errors import SMTPSetupError

__all__ = ["TOKEN_TIMEOUT", "TokenCommand", "command_environment"]

TOKEN_TIMEOUT = 60.0  # seconds; a command may open a browser or ask a keyring
# What a token command needs to find its program, its own files and the user's session.
_KEPT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "SYSTEMROOT",
         "DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY")  # fmt: skip
_KEPT_PREFIXES = ("LC_", "XDG_")


def command_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a token command runs with: only locale, paths and the user's session."""
    environ = dict(os.environ) if environ is None else environ
    return {
        name: value
        for name, value in environ.items()
        if name in _KEPT or name.startswith(_KEPT_PREFIXES)
    }


class TokenCommand:
    """Access tokens from a shell command, fetched when first needed and when one expired."""

    def __init__(self, command: str, *, where: str = "smtp.oauth2_token_command") -> None:
        self.command = command
        self.where = where
        self._reset()

    def _reset(self) -> None:
        self.runs = 0  # how many times the command ran
        self._token: str | None = None
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def __getstate__(self) -> dict[str, str]:
        """What a worker process receives: the command, never the token."""
        return {"command": self.command, "where": self.where}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.command, self.where = state["command"], state["where"]
        self._reset()

    async def token(self) -> str:
        """The current token, running the command the first time."""
        async with self._lock():
            if self._token is None:
                self._token = await asyncio.to_thread(self._run)
            return self._token

    async def refresh(self, expired: str) -> str:
        """A new token in place of ``expired`` (once, however many connections found it so)."""
        async with self._lock():
            if self._token is None or self._token == expired:
                self._token = await asyncio.to_thread(self._run)
            return self._token

    def _lock(self) -> asyncio.Lock:
        """One lock per event loop (a check and the run after it may use two loops)."""
        return self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())

    def _run(self) -> str:
        self.runs += 1
        try:
            done = subprocess.run(
                self.command, shell=True, env=command_environment(), capture_output=True,
                stdin=subprocess.DEVNULL, timeout=TOKEN_TIMEOUT, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise SMTPSetupError(f"{self.where}: no token within {TOKEN_TIMEOUT:g} s") from None
        except OSError as exc:
            raise SMTPSetupError(f"{self.where}: cannot run the command: {exc.strerror}") from None
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            why = f": {said[-1][:200]}" if said else ""  # its error, never its output
            raise SMTPSetupError(f"{self.where} failed (exit status {done.returncode}){why}")
        lines = done.stdout.decode("utf-8", "replace").split()
        if len(lines) != 1:
            raise SMTPSetupError(
                f"{self.where} must print one access token and nothing else"
                f" (it printed {len(lines)} words)"
            )
        return lines[0]
