"""SMTP AUTH: one attempt with the best mechanism the server offers, or XOAUTH2 with a token.

aiosmtplib's ``login()`` tries every mechanism in turn, so a wrong password costs several failed
logins, which trips fail2ban-style lockouts. Here a password is tried once, with PLAIN, else
LOGIN, else CRAM-MD5; an OAuth2 token once, and once more with a fresh token when the server
says it expired (Gmail and Microsoft 365 answer 334 with an error, then 535).
"""

from __future__ import annotations

from aiosmtplib import SMTP, SMTPAuthenticationError

from .errors import SMTPSetupError
from .oauth import TokenCommand

__all__ = ["MECHANISMS", "Secret", "log_in"]

# In order of preference. The connection is encrypted (or on loopback) before AUTH.
MECHANISMS = ("plain", "login", "cram-md5")

Secret = str | TokenCommand | None


async def log_in(client: SMTP, username: str, secret: Secret, where: str) -> str:
    """Authenticate ``client`` as ``username``; return the mechanism used.

    Raises SMTPSetupError when the server offers no mechanism mailaction can use, and
    aiosmtplib's SMTPAuthenticationError when the server refuses the login.
    """
    offered = client.server_auth_methods
    if isinstance(secret, TokenCommand):
        if "xoauth2" not in offered:
            raise SMTPSetupError(f"{where}: the server does not offer AUTH XOAUTH2 ({_listed(offered)})")
        token = await secret.token()
        try:
            await client.auth_xoauth2(username, token)
        except SMTPAuthenticationError as exc:
            if exc.code != 535:
                raise
            await client.auth_xoauth2(username, await secret.refresh(token))
        return "xoauth2"
    mechanism = next((name for name in MECHANISMS if name in offered), None)
    if mechanism is None:
        raise SMTPSetupError(f"{where}: the server offers no login mailaction can use ({_listed(offered)})")
    password = secret or ""
    if mechanism == "plain":
        await client.auth_plain(username, password)
    elif mechanism == "login":
        await client.auth_login(username, password)
    else:
        await client.auth_crammd5(username, password)
    return mechanism


def _listed(offered: list[str]) -> str:
    return "it offers " + ", ".join(name.upper() for name in offered) if offered else "it offers no AUTH"
