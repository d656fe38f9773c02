"""The processes a benchmark drives: SMTP sinks on loopback, and timed commands.

Every process started here is stopped by the context manager or the function that started it,
also when a benchmark fails half-way.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

SMTP_SINK = Path("/usr/sbin/smtp-sink")
SMTP_SOURCE = Path("/usr/sbin/smtp-source")
SLOW_SINK = Path(__file__).resolve().parent / "slow_sink.py"
PEAK_RSS = Path(__file__).resolve().parent / "peak_rss.py"
_SINK_COUNT = re.compile(rb"mesg=(\d+)")


class BenchmarkError(Exception):
    """A benchmark could not be run or did not do what it should."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen[bytes], seconds: float = 10.0) -> None:
    """Return once something accepts connections on ``port``; BenchmarkError if ``process`` dies."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(f"{process.args[0]} exited with {process.returncode} at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise BenchmarkError(f"nothing listens on 127.0.0.1:{port} after {seconds:g} s")


def stop(process: subprocess.Popen[bytes], seconds: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``seconds``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Finished:
    """A command that ran to its end: wall time, exit status, peak memory, what it printed."""

    seconds: float
    returncode: int
    max_rss_mib: float
    output: str  # the end of stdout and stderr together

    def check(self, what: str) -> Self:
        """Itself, or BenchmarkError when the command failed."""
        if self.returncode != 0:
            last = next((line for line in reversed(self.output.splitlines()) if line.strip()), "")
            raise BenchmarkError(f"{what} exited with {self.returncode}: {last}\n{self.output}")
        return self


def run_timed(
    command: list[str], *, timeout: float, cwd: Path | None = None, tail: int = 3000
) -> Finished:
    """Run ``command`` to its end, killing it after ``timeout`` seconds.

    It runs as the child of `peak_rss.py`, which times it and reads its peak RSS from wait4():
    the command's own high-water mark, not this process's (see that script).
    """
    with tempfile.TemporaryFile() as output, tempfile.TemporaryDirectory() as scratch:
        measured = Path(scratch) / "measured"
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, str(PEAK_RSS), str(measured), *command], cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        timer = threading.Timer(timeout, os.killpg, (process.pid, signal.SIGKILL))
        timer.start()
        try:
            returncode = process.wait()
        finally:
            timer.cancel()
        output.seek(max(output.seek(0, os.SEEK_END) - tail, 0))
        text = output.read().decode("utf-8", "replace")
        seconds, peak_kib = (
            map(float, measured.read_text(encoding="ascii").split())
            if measured.exists()
            else (time.perf_counter() - started, 0.0)
        )
    if returncode == -signal.SIGKILL and time.perf_counter() - started >= timeout:
        raise BenchmarkError(f"{command[0]} did not finish within {timeout:g} s:\n{text}")
    return Finished(seconds, returncode, peak_kib / 1024, text)


class _ServerProcess:
    """A server in its own process with a scratch file, stopped when the `with` block ends."""

    _process: subprocess.Popen[bytes]
    _file: Path

    def _wait_ready(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        stop(self._process)
        self._file.unlink(missing_ok=True)


class PostfixSink(_ServerProcess):
    """Postfix's smtp-sink on a free loopback port; counts the messages it accepted."""

    def __init__(self) -> None:
        self.port = free_port()
        self._file = Path(tempfile.mkstemp(prefix="smtp-sink-", suffix=".out")[1])
        # smtp-sink refuses to run as root without -u; it drops to that user after binding.
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        with self._file.open("wb") as counter:
            self._process = subprocess.Popen(
                [str(SMTP_SINK), *user, "-c", f"127.0.0.1:{self.port}", "1000"],
                stdout=counter, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def _wait_ready(self) -> None:
        wait_listening(self.port, self._process)

    def received(self) -> int:
        """Messages accepted so far (smtp-sink's -c counter, updated at each QUIT)."""
        counts = _SINK_COUNT.findall(self._file.read_bytes())
        return int(counts[-1]) if counts else 0


class SlowSink(_ServerProcess):
    """benchmarks/slow_sink.py in its own process: replies after ``delay``, records arrivals."""

    def __init__(self, delay: float, *, record: bool = False, ids: bool = False) -> None:
        self._file = Path(tempfile.mkstemp(prefix="arrivals-", suffix=".txt")[1])
        command = [sys.executable, str(SLOW_SINK), "--delay", str(delay)]
        if record or ids:
            command += ["--times", str(self._file)] + (["--ids"] if ids else [])
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE)
        self.port = 0

    def _wait_ready(self) -> None:
        assert self._process.stdout is not None
        line = self._process.stdout.readline().decode()
        if not line.startswith("port "):
            raise BenchmarkError(f"slow_sink.py did not start: {line!r}")
        self.port = int(line.split()[1])

    def arrivals(self) -> list[float]:
        """Stop the sink and return when each message's data ended (monotonic seconds)."""
        stop(self._process)
        return sorted(float(line.split()[0]) for line in self._file.read_text().splitlines())

    def identified(self) -> list[tuple[float, str]]:
        """Stop the sink (made with ``ids``); each message's arrival time and Message-ID."""
        stop(self._process)
        lines = (line.split(" ", 1) for line in self._file.read_text().splitlines())
        return sorted((float(at), message_id) for at, message_id in lines)
