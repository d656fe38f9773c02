"""An SMTP server offering AUTH XOAUTH2 only, whose tokens expire as Gmail's and Microsoft's do."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult

from tests.smtpserver import FaultServer

# Prints "ya29.test-token-<n>", n counting the runs in the file given; writes its environment.
TOKEN_SCRIPT = """\
import json, os, pathlib, sys
runs = pathlib.Path(sys.argv[1])
n = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(n))
pathlib.Path(sys.argv[2]).write_text(json.dumps(dict(os.environ)))
print(f"ya29.test-token-{n}")
"""
TOKEN_PREFIX = "ya29.test-token-"


def token_command(folder: Path) -> str:
    """A command printing a new token on each run; its runs and environment are kept in ``folder``."""
    folder.mkdir(exist_ok=True)
    script = folder / "token.py"
    script.write_text(TOKEN_SCRIPT, encoding="utf-8")
    return f"{sys.executable} {script} {folder / 'runs'} {folder / 'environment.json'}"


def token_runs(folder: Path) -> int:
    runs = folder / "runs"
    return int(runs.read_text()) if runs.exists() else 0


class OAuthServer(FaultServer):
    """Offers AUTH XOAUTH2 (only) to ``user``; any token is good, except that each token in
    ``expire_after_one_login`` is accepted for one login and then has expired (334 with a JSON
    error, then 535 once the client answers, as Gmail does)."""

    def __init__(self, user: str, *, expire_after_one_login: set[str], **kwargs: Any) -> None:
        super().__init__(auth={user: ""}, **kwargs)  # `auth` makes aiosmtpd offer AUTH
        self._controller.SMTP_kwargs["auth_exclude_mechanism"] = ["PLAIN", "LOGIN"]
        self.user = user
        self.expiring = set(expire_after_one_login)
        self.expired: set[str] = set()
        self.tokens_accepted: list[str] = []
        self.tokens_refused: list[str] = []

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """aiosmtpd calls ``auth_<MECHANISM>`` methods of the handler."""
        fields = base64.b64decode(args[1]).split(b"\x01") if len(args) > 1 else []
        user = fields[0].removeprefix(b"user=").decode() if fields else ""
        token = fields[1].removeprefix(b"auth=Bearer ").decode() if len(fields) > 1 else ""
        if user == self.user and token and token not in self.expired:
            if token in self.expiring:
                self.expired.add(token)
            self.tokens_accepted.append(token)
            return AuthResult(success=True)
        self.tokens_refused.append(token)
        error = {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}
        await server.challenge_auth(json.dumps(error))
        return AuthResult(success=False, handled=False)
