"""The worker processes of a running `send --workers`, as tests and the kill benchmark see them."""

from __future__ import annotations

import time
from pathlib import Path


def worker_pids(parent: int) -> list[int]:
    """The worker processes a sending `send --workers` runs: every child but multiprocessing's
    resource tracker (the first workers are forked, replacements spawned; while the letters are
    sent, no other child is left)."""
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return []
    pids = []
    for pid in map(int, children):
        try:
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            continue
    return pids


def started_another(parent: int, seen: set[int], seconds: float = 10) -> bool:
    """Whether the parent starts a worker not in ``seen`` (a replacement) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if set(worker_pids(parent)) - seen:
            return True
        time.sleep(0.05)
    return False
