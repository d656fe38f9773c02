"""Runs a function over chunks of work in worker processes and hands back results in order."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from itertools import chain
from typing import Any, TypeVar

Kept = TypeVar("Kept")
Sent = TypeVar("Sent")
Result = TypeVar("Result")

MAX_WORKERS = 4
# Fork where it is safe: a forked worker is ready in milliseconds and shares this process's
# imported modules, where a spawned one starts an interpreter and imports them again (~0.3 s).
# The workers only render and build letters: they take none of the locks another thread of this
# process (BLAS, the log's checkpoint) may hold at the fork, never touch its open delivery log,
# and leave through os._exit. macOS forbids fork once some system libraries have started; there
# the workers are spawned.
CONTEXT = (
    multiprocessing.get_context("spawn")
    if sys.platform == "darwin"
    else multiprocessing.get_context("fork")
)
ORPHAN_POLL = 0.2  # seconds between a worker's looks at its parent
AHEAD = 2  # chunks in flight per worker: enough to keep each busy, few enough to keep memory flat


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def pool_size() -> int:
    """Worker processes worth starting here: one per usable core, at most four; 0 on one core."""
    usable = cores()
    return min(usable, MAX_WORKERS) if usable > 1 else 0


def ordered_map(
    function: Callable[[Sent], Result],
    chunks: Iterable[tuple[Kept, Sent]],
    *,
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...] = (),
) -> Generator[tuple[Kept, Result], None, None]:
    """``(kept, function(sent))`` for each chunk, in the chunks' order, computed in ``workers``.

    ``initializer(*initargs)`` runs once in each worker. At most ``AHEAD`` chunks per worker are
    in flight. An exception raised by ``function`` is raised here. Close the iterator (or use
    ``contextlib.closing``) to stop the workers early; no process starts when there is no chunk.
    """
    chunks = iter(chunks)
    first = next(chunks, None)
    if first is None:
        return
    pool = ProcessPoolExecutor(
        workers, mp_context=CONTEXT, initializer=_start_worker,
        initargs=(initializer, initargs, os.getpid()),
    )  # fmt: skip
    pending: deque[tuple[Kept, Future[Result]]] = deque()
    try:
        for kept, sent in chain([first], chunks):
            with interrupts_held():
                pending.append((kept, pool.submit(function, sent)))
            if len(pending) >= workers * AHEAD:
                kept, future = pending.popleft()
                yield kept, future.result()
        while pending:
            kept, future = pending.popleft()
            yield kept, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold a Ctrl-C back meanwhile and deliver it after; a worker started now begins with SIGINT
    blocked, see `_start_worker`.

    Ctrl-C reaches every process of the terminal's process group; only the main process should
    act on it, by stopping the pool, and not half-way through starting a worker. Blocking SIGINT
    holds it back in this thread only: another thread may take it, so the main thread's handler
    only records it meanwhile.
    """
    held: list[int] = []
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        previous = signal.signal(signal.SIGINT, lambda number, frame: held.append(number))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if in_main:
            signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)


def _start_worker(initializer: Callable[..., None], initargs: tuple[Any, ...], parent: int) -> None:
    """Set up one worker; Ctrl-C is left to the main process, which stops the pool."""
    leave_ctrl_c_to_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker may inherit a handler
    threading.Thread(target=exit_when_orphaned, args=(parent,), daemon=True).start()
    initializer(*initargs)


def leave_ctrl_c_to_parent() -> None:
    """In a worker process: ignore Ctrl-C, which reaches every process of the terminal and which
    the main process acts on for all. Ignored while still blocked (a worker started inside
    `interrupts_held`), one that came during start-up is dropped too."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def exit_when_orphaned(parent: int) -> None:
    """Leave at once (os._exit) when ``parent`` is no longer this process's parent.

    A forked process holds copies of its parent's descriptors, the delivery log's lock among
    them, and of the pipes the pool hands work through: killed with SIGKILL, the main process
    would leave its workers waiting for work forever, and the log locked.
    """
    while os.getppid() == parent:
        time.sleep(ORPHAN_POLL)
    os._exit(1)
