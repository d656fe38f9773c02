"""Delivery from the queue: one or several workers, each claiming letters from the shared log.

A worker is a sender event loop that claims batches of queued letters (`DeliveryLog.claim`),
sends them, and beats a heartbeat into the log. `send --workers N` runs N worker processes on
this machine under one parent, which holds the log's lock, shows the progress of the whole run
from the log's counts, and restarts a worker killed by a signal after giving its letters back
(`uncertain` for those it was sending). Workers on other machines (a PostgreSQL log) find a
silent worker's letters after its lease and give them back the same way.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Self

from .config import Config
from .deliverylog import DeliveryLog, Outcome, State, open_log
from .dkim import letter_signer
from .errors import DeliveryLogError, MailactionError, SendingStopped
from .message import Letter, restamped
from .parallel import CONTEXT, ORPHAN_POLL, interrupts_held, leave_ctrl_c_to_parent
from .sender import Sender, SendSummary
from .sharedlimit import SharedLimiter
from .smtpauth import Secret

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from .multiaccount import AccountPool

LEASE = 30.0  # seconds a worker may stay silent before others take it for dead
CLAIM_BATCH = 256  # letters claimed at a time
POLL = 0.25  # seconds between looks at the log: the parent's progress, an idle worker's queue
# The parent counts the log's letters for the progress at most this share of its time: counting
# reads the whole campaign (44 ms for 100,000 letters), so a large one is counted less often.
COUNTING_SHARE = 0.05
MAX_RESTARTS = 100  # workers killed by a signal restarted in one run, at most

OnOutcome = Callable[[Letter, Outcome], None]
Advance = Callable[[State, int], None]  # ``n`` more letters reached a final state
Progress = Callable[[int], AbstractContextManager[Advance | None]]
FINAL = (State.SENT, State.FAILED, State.UNCERTAIN)


@dataclass(frozen=True)
class WorkerJob:
    """What a worker needs to deliver a campaign's queue; sent to each worker process."""

    config: Config
    location: Path | str  # the delivery log: a SQLite file or a PostgreSQL URL
    campaign: str  # the log key
    password: Secret = None
    upto: tuple[int, str] | None = None  # the last queued letter this run may send
    lease: float = LEASE
    shared_limits: bool = False  # rate limits kept in the log, for every worker
    worker: str = field(default_factory=lambda: worker_id())


def worker_id() -> str:
    """A name for a new worker, unique across machines: host, process, random."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class RunResult:
    """How the sending part of a run ended."""

    summary: SendSummary
    interrupted: bool = False


def claimed(
    log: DeliveryLog,
    *,
    lease: float,
    upto: tuple[int, str] | None,
    sign: Callable[[Letter], Letter],
) -> Iterator[Letter]:
    """The letters this worker claims from the queue, in spreadsheet order, dated and signed
    as they go (signed after the Date is set: it is signed)."""
    after = (-1, "")
    while letters := log.claim(CLAIM_BATCH, lease=lease, after=after, upto=upto):
        for letter in letters:
            yield sign(restamped(letter))
        after = (letters[-1].row, letters[-1].contact_id)


def send_letters(
    sender: Sender,
    letters: Iterator[Letter],
    *,
    on_outcome: OnOutcome | None = None,
    on_interrupt: Callable[[int], None] | None = None,
) -> RunResult:
    """Run the sender; the first Ctrl-C (or SIGTERM) stops taking letters, the second aborts."""
    return _frozen(_Shift(sender, lambda: letters, on_outcome, on_interrupt).run())


def deliver(
    job: WorkerJob,
    log: DeliveryLog,
    *,
    on_outcome: OnOutcome | None = None,
    on_interrupt: Callable[[int], None] | None = None,
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
    parent: int | None = None,
    sender: AccountPool | None = None,
) -> RunResult:
    """Deliver the campaign's queue as one worker until no letter is left for it or to wait for.

    The worker joins the log, claims letters in batches, and beats a heartbeat every sixth of
    its lease; it waits while other workers hold letters (theirs come back if they die). Each
    signal in ``signals`` counts as a Ctrl-C. A worker whose ``parent`` process is gone stops
    at once.
    """
    log.join(job.worker)
    sending = job.config.sending
    limiter = None
    if job.shared_limits and (sending.rate or sending.per_domain_rate):
        limiter = SharedLimiter(log, sending.rate, sending.per_domain_rate)
    sending_by: Sender | AccountPool = sender or Sender(
        job.config.smtp, sending, log, password=job.password, limiter=limiter
    )
    sign = letter_signer(job.config.dkim)
    shift = _Shift(
        sending_by,
        lambda: claimed(log, lease=job.lease, upto=job.upto, sign=sign),
        on_outcome,
        on_interrupt,
        signals=signals,
        log=log,
        job=job,
        parent=parent,
    )
    try:
        return _frozen(shift.run())
    finally:
        log.leave()


def _frozen(run: Coroutine[object, object, RunResult]) -> RunResult:
    """Run a coroutine with what is alive now left out of garbage collection.

    Collecting the plan's letters took up to 50 ms at a time, long enough to push letters past
    their rate-limit slots.
    """
    gc.freeze()
    try:
        return asyncio.run(run)
    finally:
        gc.unfreeze()


class _Shift:
    """One worker's event loop: the sender over the claimed letters, signals, heartbeats."""

    def __init__(
        self,
        sender: Sender | AccountPool,
        letters: Callable[[], Iterator[Letter]],
        on_outcome: OnOutcome | None,
        on_interrupt: Callable[[int], None] | None,
        *,
        signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
        log: DeliveryLog | None = None,
        job: WorkerJob | None = None,
        parent: int | None = None,
    ) -> None:
        self.sender = sender
        self.letters = letters
        self.on_outcome = on_outcome
        self.on_interrupt = on_interrupt
        self.signals = signals
        self.log = log
        self.job = job
        self.parent = parent
        self.presses = 0
        self.error: Exception | None = None

    async def run(self) -> RunResult:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stop = asyncio.Event()

        def interrupted() -> None:
            self.presses += 1
            if self.on_interrupt is not None:
                self.on_interrupt(self.presses)
            if self.presses == 1:
                stop.set()
            else:
                task.cancel()

        for sig in self.signals:
            loop.add_signal_handler(sig, interrupted)
        beats = asyncio.ensure_future(self._heartbeats(task))
        summary = SendSummary(started=time.time())
        try:
            while True:
                part = await self.sender.send(self.letters(), on_outcome=self.on_outcome, stop=stop)
                _add(summary, part)
                if stop.is_set() or part.stopped_reason or not self._more():
                    break
                with suppress(TimeoutError):
                    async with asyncio.timeout(POLL):
                        await stop.wait()
        except asyncio.CancelledError:
            if self.error is not None:
                raise self.error from None
            summary.stopped_reason = "aborted"
            return RunResult(summary, interrupted=True)
        finally:
            beats.cancel()
            for sig in self.signals:
                loop.remove_signal_handler(sig)
        summary.finished = time.time()
        return RunResult(summary, interrupted=self.presses > 0)

    def _more(self) -> bool:
        """Whether letters may still come this worker's way (queued, or held by others)."""
        return self.log is not None and self.log.work_left(self.job.upto if self.job else None)

    async def _heartbeats(self, task: asyncio.Task[RunResult]) -> None:
        """Beat every sixth of the lease; stop the worker when the log or the parent is lost."""
        if self.log is None or self.job is None:
            return
        while True:
            await asyncio.sleep(self.job.lease / 6)
            try:
                self.log.heartbeat()
            except DeliveryLogError as exc:
                self.error = exc
                task.cancel()
                return
            if self.parent is not None and os.getppid() != self.parent:
                task.cancel()  # orphaned: the parent was killed; its next run recovers
                return


def _add(total: SendSummary, part: SendSummary) -> None:
    """Count ``part`` (one pass of the sender) into ``total``."""
    for name in ("sent", "failed", "deferred", "uncertain"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.stopped_reason = total.stopped_reason or part.stopped_reason


def deliver_in_process(
    job: WorkerJob,
    log: DeliveryLog,
    progress: Progress | None,
    total: int,
    on_interrupt: Callable[[int], None] | None,
    *,
    sender: AccountPool | None = None,
) -> RunResult:
    """One worker, in this process, with the progress of each outcome; ``sender`` (several
    accounts) sends instead of the job's one account."""
    with progress(total) if progress is not None else nullcontext(None) as advance:
        on_outcome = None
        if advance is not None:
            step = advance

            def on_outcome(letter: Letter, outcome: Outcome) -> None:
                if outcome.state in FINAL:
                    step(outcome.state, 1)

        return deliver(job, log, on_outcome=on_outcome, on_interrupt=on_interrupt, sender=sender)


def deliver_in_workers(
    job: WorkerJob,
    log: DeliveryLog,
    count: int,
    progress: Progress | None,
    total: int,
    on_interrupt: Callable[[int], None] | None,
    standby: Standby | None = None,
) -> RunResult:
    """``count`` worker processes; this one watches them and the log until they are done.

    The workers waiting in ``standby`` are used first. A Ctrl-C (or SIGTERM) here is passed on
    to every worker as a SIGTERM: the first stops them taking letters, the second aborts the
    letters in flight. A worker killed by a signal gets its letters given back and is replaced
    by a spawned one, while the run goes on.
    """
    supervisor = _Supervisor(job, log, on_interrupt, standby)
    with progress(total) if progress is not None else nullcontext(None) as advance:
        return supervisor.run(count, advance)


class _Supervisor:
    """The parent of the worker processes of one run."""

    def __init__(
        self,
        job: WorkerJob,
        log: DeliveryLog,
        on_interrupt: Callable[[int], None] | None,
        standby: Standby | None,
    ) -> None:
        self.job = job
        self.log = log
        self.on_interrupt = on_interrupt
        self.standby = standby
        # Replacements are spawned: this process now has the log open, and maybe a thread
        # checkpointing it, which a forked child would inherit.
        self.context = multiprocessing.get_context("spawn")
        self.running: dict[str, tuple[BaseProcess, Connection]] = {}
        self.presses = 0
        self.restarts = 0
        self.summary = SendSummary(started=time.time())
        self.error: MailactionError | None = None
        self.next_count = 0.0  # when the progress may count the log again (monotonic)

    def run(self, count: int, advance: Advance | None) -> RunResult:
        before = self.log.counts()
        seen = dict(before)
        previous = {sig: signal.signal(sig, self._interrupted) for sig in _STOP_SIGNALS}
        try:
            for _ in range(count):
                self._start()
            while self.running:
                ended = [process.sentinel for process, _ in self.running.values()]
                wait(ended, timeout=POLL)  # a worker ended, or the progress is due
                self._reap()
                seen = self._show(seen, advance)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for process, _ in self.running.values():
                process.kill()
        after = self.log.counts()
        if advance is not None:
            _advance(advance, seen, after)  # the last progress, never put off
        for state in (State.SENT, State.FAILED, State.UNCERTAIN):
            setattr(self.summary, state.value, after[state] - before[state])
        self.summary.finished = time.time()
        if self.error is not None:
            raise self.error
        return RunResult(self.summary, interrupted=self.presses > 0)

    def _start(self) -> None:
        job = replace(self.job, worker=worker_id())
        waiting = self.standby.take(job) if self.standby is not None else None
        if waiting is not None:
            self.running[job.worker] = waiting
            return
        receiver, reporter = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_work, args=(job, reporter, os.getpid()), name=f"mailaction worker {job.worker}"
        )
        process.start()
        reporter.close()
        self.running[job.worker] = (process, receiver)

    def _reap(self) -> None:
        """Collect the workers that ended; replace those killed while the run goes on."""
        for worker, (process, receiver) in list(self.running.items()):
            if process.is_alive():
                continue
            process.join()
            del self.running[worker]
            reported = _report(receiver)
            if isinstance(reported, SendSummary):
                self.summary.stopped_reason = self.summary.stopped_reason or reported.stopped_reason
                continue
            if isinstance(reported, MailactionError):
                self.error = self.error or reported
                self._stop_all()
                continue
            self.log.recover_worker(worker)  # killed: its letters go back to the queue
            if self.presses == 0 and self.error is None and self.restarts < MAX_RESTARTS:
                self.restarts += 1
                self._start()
            elif self.error is None and self.presses == 0:
                self.error = SendingStopped(
                    f"workers were killed {MAX_RESTARTS} times; sending stopped: see"
                    " `mailaction report`"
                )

    def _show(self, seen: dict[State, int], advance: Advance | None) -> dict[State, int]:
        """Advance the progress by the letters settled since ``seen``; the counts now."""
        if advance is None or time.monotonic() < self.next_count:
            return seen
        began = time.monotonic()
        counts = self.log.counts()
        self.next_count = began + (time.monotonic() - began) / COUNTING_SHARE
        _advance(advance, seen, counts)
        return counts

    def _interrupted(self, signum: int, frame: object) -> None:
        self.presses += 1
        if self.on_interrupt is not None:
            self.on_interrupt(self.presses)
        self._stop_all()

    def _stop_all(self) -> None:
        for process, _ in self.running.values():
            if process.pid is not None and process.is_alive():
                with suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _advance(advance: Advance, seen: dict[State, int], counts: dict[State, int]) -> None:
    """Advance the progress by the letters settled between ``seen`` and ``counts``."""
    for state in FINAL:
        if counts[state] > seen[state]:
            advance(state, counts[state] - seen[state])


def _report(receiver: Connection) -> SendSummary | MailactionError | None:
    """What a worker that ended reported; None when it was killed before it could."""
    try:
        reported = receiver.recv() if receiver.poll() else None
    except EOFError:
        return None
    finally:
        receiver.close()
    return reported if isinstance(reported, SendSummary | MailactionError) else None


class Standby:
    """Delivery worker processes started before the plan, each waiting for its WorkerJob.

    They are forked (spawned on macOS) before the contacts are read and the log is opened, so
    they hold neither, and a forked one is ready in milliseconds where a spawned one imports
    mailaction again (~0.3 s on 2 cores). A worker not given a job leaves when the standby is
    closed, or when the main process is gone.
    """

    def __init__(self, count: int) -> None:
        self.waiting: list[tuple[BaseProcess, Connection, Connection]] = []
        for _ in range(count):
            jobs, job_sender = CONTEXT.Pipe(duplex=False)
            receiver, reporter = CONTEXT.Pipe(duplex=False)
            process = CONTEXT.Process(
                target=_stand_by, args=(jobs, reporter, os.getpid()), name="mailaction worker"
            )
            with interrupts_held():  # it starts with Ctrl-C blocked, then ignores it
                process.start()
            jobs.close()
            reporter.close()
            self.waiting.append((process, job_sender, receiver))

    def take(self, job: WorkerJob) -> tuple[BaseProcess, Connection] | None:
        """A waiting worker, given ``job``: its process and the end it reports on; None when
        none is left (or the one taken has died meanwhile)."""
        while self.waiting:
            process, job_sender, receiver = self.waiting.pop()
            try:
                job_sender.send(job)
            except OSError:
                receiver.close()
                continue
            finally:
                job_sender.close()
            return process, receiver
        return None

    def close(self) -> None:
        """Send the workers that got no job away."""
        for process, job_sender, receiver in self.waiting:
            with suppress(OSError):
                job_sender.send(None)
            job_sender.close()
            receiver.close()
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
        self.waiting = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _stand_by(jobs: Connection, reporter: Connection, parent: int) -> None:
    """A standby worker: wait for a job, then deliver it; leave on None or when orphaned."""
    leave_ctrl_c_to_parent()
    while not jobs.poll(ORPHAN_POLL):
        if os.getppid() != parent:
            return
    try:
        job = jobs.recv()
    except EOFError:
        return
    finally:
        jobs.close()
    if job is not None:
        _work(job, reporter, parent)


def _work(job: WorkerJob, reporter: Connection, parent: int) -> None:
    """A worker process: deliver, then report the summary or the error that stopped it."""
    leave_ctrl_c_to_parent()
    reported: SendSummary | MailactionError
    try:
        with open_log(job.location, job.campaign, create=False) as log:
            reported = deliver(job, log, signals=(signal.SIGTERM,), parent=parent).summary
    except MailactionError as exc:
        reported = exc
    reporter.send(reported)
    reporter.close()
