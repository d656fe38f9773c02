"""Runs a function over chunks of work in worker processes and hands back results in order."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import chain
from typing import Any, TypeVar

Kept = TypeVar("Kept")
Sent = TypeVar("Sent")
Result = TypeVar("Result")

MAX_WORKERS = 4
AHEAD = 2  # chunks in flight per worker: enough to keep each busy, few enough to keep memory flat


def pool_size() -> int:
    """Worker processes worth starting here: one per usable core, at most four; 0 on one core."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return min(cores, MAX_WORKERS) if cores > 1 else 0


def ordered_map(
    function: Callable[[Sent], Result],
    chunks: Iterable[tuple[Kept, Sent]],
    *,
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...] = (),
) -> Iterator[tuple[Kept, Result]]:
    """``(kept, function(sent))`` for each chunk, in the chunks' order, computed in ``workers``.

    ``initializer(*initargs)`` runs once in each worker. At most ``AHEAD`` chunks per worker are
    in flight. An exception raised by ``function`` is raised here. Close the iterator (or use
    ``contextlib.closing``) to stop the workers early; no process starts when there is no chunk.
    """
    chunks = iter(chunks)
    first = next(chunks, None)
    if first is None:
        return
    # forkserver, not fork: workers start from a fresh process that preloaded the worker's module,
    # so no lock held by another thread of this process (pandas, BLAS) is copied into them.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([function.__module__])
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(initializer, initargs)
    )
    pending: deque[tuple[Kept, Future[Result]]] = deque()
    try:
        for kept, sent in chain([first], chunks):
            pending.append((kept, pool.submit(function, sent)))
            if len(pending) >= workers * AHEAD:
                kept, future = pending.popleft()
                yield kept, future.result()
        while pending:
            kept, future = pending.popleft()
            yield kept, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _start_worker(initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    """Set up one worker; Ctrl-C is left to the main process, which stops the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    initializer(*initargs)
