"""A real terminal (a pseudo-terminal) for running `mailaction` as a person at a keyboard does."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Self


class Terminal:
    """`python -m mailaction ARGS` on an 80x24 terminal; what it writes collects in `output`."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.master, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        environment = {
            key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")
        }
        environment["TERM"] = "xterm-256color"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailaction", *args], cwd=cwd, env=environment,
            stdin=follower, stdout=follower, stderr=follower, start_new_session=True,
        )  # fmt: skip
        os.close(follower)
        self.output = b""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        os.close(self.master)

    def _read(self, timeout: float) -> bool:
        """Read what is there within `timeout` seconds; False once the program closed it."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every copy of the terminal's other end is closed
            return False
        self.output += data
        return bool(data)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        """Read until `text` has been written."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            assert time.monotonic() < deadline, f"no {text!r} in {self.output[-2000:]!r}"
            assert self._read(0.1), f"ended without {text!r}: {self.output[-2000:]!r}"

    def type(self, keys: bytes) -> None:
        """Type on the keyboard (b"\\x04" is Ctrl-D, b"\\x03" Ctrl-C)."""
        os.write(self.master, keys)

    def finish(self, timeout: float = 60) -> int:
        """Read to the end and return the exit code."""
        deadline = time.monotonic() + timeout
        while self._read(0.1):
            assert time.monotonic() < deadline, f"still running: {self.output[-2000:]!r}"
        return self.process.wait(timeout=10)
