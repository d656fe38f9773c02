"""A real Dovecot IMAP server on a free loopback port, TLS only, for one test user.

Started as a child process with a configuration of its own in a temporary folder (nothing of
the system's Dovecot is used or changed); `.ci/run` installs the `dovecot-imapd` package.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.smtpserver import Certificate, make_certificate

DOVECOT = "/usr/sbin/dovecot"
USER = "bounces"
PASSWORD = "imap-test-password"

_CONFIG = """\
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
auth_mechanisms = plain
disable_plaintext_auth = yes
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
mail_location = maildir:{base}/mail/%u
passdb {{
  driver = static
  args = user={user} password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={base}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {starttls_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
"""


def require_dovecot() -> None:
    """Skip the test when Dovecot is not installed (`.ci/run` installs it)."""
    if not os.access(DOVECOT, os.X_OK):
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd; .ci/run does it)")


class Dovecot:
    """One Dovecot serving USER with PASSWORD over TLS: from the start on ``port``, after
    STARTTLS on ``starttls_port`` (where logging in before STARTTLS is refused)."""

    def __init__(self, port: int, starttls_port: int) -> None:
        require_dovecot()
        # Not under pytest's tmp_path: Dovecot's unprivileged users must reach this folder.
        folder = self.folder = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.port = port
        self.starttls_port = starttls_port
        self.certificate: Certificate = make_certificate(folder)
        mail_user = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        if os.geteuid() == 0:
            internal, login = "dovecot", "dovenull"
        else:
            internal = login = mail_user.pw_name
        (folder / "mail").mkdir()
        os.chown(folder / "mail", mail_user.pw_uid, mail_user.pw_gid)
        config = folder / "dovecot.conf"
        config.write_text(
            _CONFIG.format(
                base=folder, cert=self.certificate.cert, key=self.certificate.key, port=port,
                starttls_port=starttls_port,
                user=USER, password=PASSWORD, uid=mail_user.pw_uid, gid=mail_user.pw_gid,
                internal=internal, login=login,
            ),
            encoding="utf-8",
        )  # fmt: skip
        folder.chmod(0o755)
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"dovecot stopped: {self._output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"dovecot did not start listening: {self._output()}")

    def _output(self) -> str:
        log = self.folder / "dovecot.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def client_context(self) -> ssl.SSLContext:
        """A TLS context that trusts this server's certificate."""
        return ssl.create_default_context(cafile=str(self.certificate.cert))

    def connect(self) -> imaplib.IMAP4_SSL:
        """A logged-in IMAP client."""
        client = imaplib.IMAP4_SSL(
            "127.0.0.1", self.port, ssl_context=self.client_context(), timeout=10
        )
        client.login(USER, PASSWORD)
        return client

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        """Deliver ``messages`` into ``folder`` as the server would have."""
        client = self.connect()
        try:
            if folder != "INBOX":
                client.create(folder)
            for message in messages:
                status, detail = client.append(
                    folder, "", imaplib.Time2Internaldate(time.time()), message
                )
                assert status == "OK", detail
        finally:
            client.logout()

    def count(self, folder: str = "INBOX") -> int:
        """How many messages ``folder`` holds now."""
        client = self.connect()
        try:
            status, data = client.select(folder, readonly=True)
            assert status == "OK", data
            return int(data[0] or b"0")
        finally:
            client.logout()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
