"""Run a command as the child of this small process; write its wall time and its own peak RSS.

    python peak_rss.py OUT COMMAND...

A process's peak RSS (``ru_maxrss``) keeps the high-water mark of the memory it had before it
called exec: Linux records the old address space's peak there. A command started straight from
a large benchmark process (or from a vfork of it) therefore reports that process's size
whenever its own is smaller. Started from here, it inherits only this interpreter's few MiB.
OUT gets "<seconds> <peak RSS in KiB>"; the exit status is the command's (a command killed by a
signal kills this process with the same signal).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path


def main() -> None:
    out, command = Path(sys.argv[1]), sys.argv[2:]
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    out.write_text(f"{time.perf_counter() - started} {usage.ru_maxrss}\n", encoding="ascii")
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        with suppress(OSError):  # SIGKILL keeps its default: it cannot be caught
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
