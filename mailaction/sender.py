"""Sends letters over SMTP: a few reused connections, rate limits, retries, and an honest log.

This module schedules: which letter goes next (queues per recipient domain), over which of
the connections the server allows, at what pace, and what its outcome means; `transport`
speaks SMTP. A letter must never go out twice nor be silently lost. The log says ``sending``
(committed) before the message data is written; when the connection is lost after the data was
written but before the server replied, the letter is ``uncertain`` (it may have arrived) and is
never retried here.

``on_outcome`` is called once per final outcome (SENT, FAILED, UNCERTAIN) and once for each retry
scheduled (DEFERRED); a progress bar should advance on the final outcomes only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import heapq
import itertools
import random
import re
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import Rate, SendingConfig, SMTPConfig
from .deliverylog import DeliveryLog, Outcome, State
from .errors import SMTPSetupError
from .ratelimit import CampaignLimiter, Limiter, ServerLimits
from .smtpauth import Secret
from .transport import (
    Connection,
    Offer,
    Reply,
    Unavailable,
    Uncertain,
    check_connection,
    is_loopback,
    open_connection,
)

if TYPE_CHECKING:
    from .message import Letter

__all__ = ["Outcome", "SendSummary", "Sender", "check_server", "is_loopback", "retry_delay"]

MAX_RETRY_DELAY = 300.0
# The limiter spaces slots for a rate 1.5 % below the configured one: the time from taking a
# slot to the letter reaching the server varies by milliseconds, and without this margin that
# jitter alone can put one letter too many into a one-second window counted at the server.
# Measured at a sink on a busy 2-core machine, 1 % still let a 201st letter into a second.
RATE_MARGIN = 1.015
# Letters marked `sending` between two checkpoints run in a thread (`_SendingMarks`): a letter
# writes at most 6 WAL pages (its row and two index pages, twice), so the WAL stays under
# SQLite's 1,000-page trigger for its own checkpoint.
CHECKPOINT_EVERY = 150
# Letters read ahead of the connections, in queues per recipient domain (`_DomainQueues`).
LOOKAHEAD = 2000
LOOKAHEAD_BYTES = 64 * 2**20  # and at most this much message data (large attachments)
# A letter sent back untried by the server's limits this many times is charged an attempt.
MAX_PUT_BACK = 10
_CONTROL = re.compile(rb"[\r\n\0]")
_INTERRUPTED = Outcome(
    State.UNCERTAIN,
    None,
    "interrupted after the message was sent, before the server replied; it may have arrived",
)

OnOutcome = Callable[["Letter", Outcome], None]


@dataclass
class SendSummary:
    """What one call to `Sender.send` did; ``deferred`` counts letters left waiting to retry."""

    sent: int = 0
    failed: int = 0
    deferred: int = 0
    uncertain: int = 0
    started: float = 0.0  # unix time
    finished: float = 0.0
    stopped_reason: str | None = None  # set when the run stopped before the end of the letters
    refused_connections: int = 0  # connections the server refused at connect (its limits)
    slow_downs: int = 0  # letters the server refused for its rate (450/452 4.7.x at MAIL)


class Sender:
    """Sends letters through one SMTP server and records every attempt in the delivery log."""

    def __init__(
        self,
        smtp: SMTPConfig,
        sending: SendingConfig,
        log: DeliveryLog,
        *,
        password: Secret = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.smtp = smtp
        self.sending = sending
        self.log = log
        self._password = password
        self.limiter = limiter  # None: the rates of ``sending``, kept in this process

    async def send(
        self,
        letters: Iterable[Letter],
        *,
        on_outcome: OnOutcome | None = None,
        stop: asyncio.Event | None = None,
    ) -> SendSummary:
        """Send letters already registered in the log; return when all are settled or stopped.

        Setting ``stop`` stops taking letters and lets the transactions in flight finish.
        Cancelling the task closes the connections at once; a letter whose data may have reached
        the server is then logged ``uncertain``. A DeliveryLogError or SMTPSetupError stops the
        run and is raised once the letters in flight are settled.
        """
        run = _Run(self, letters, on_outcome, stop or asyncio.Event())
        return await run.execute()


async def check_server(smtp: SMTPConfig, sending: SendingConfig, password: Secret) -> Offer:
    """Connect, secure, log in and quit, so a run does not start against a server it cannot use.

    Returns what the server offered (SIZE, SMTPUTF8, PIPELINING).
    """
    try:
        return await check_connection(smtp, sending.timeout, password, await _local_hostname())
    except Unavailable as unavailable:
        raise SMTPSetupError(f"{smtp.address}: {unavailable.reply}") from None


def _with_margin(rate: Rate | None) -> Rate | None:
    return None if rate is None else Rate(rate.count, rate.seconds * RATE_MARGIN)


def retry_delay(base: float, attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt``: doubling, ±25 % jitter, at most 5 min."""
    return min(base * 2.0 ** min(attempt - 1, 32) * random.uniform(0.75, 1.25), MAX_RETRY_DELAY)


class _Failed(Exception):
    """An attempt that ended before any message data was sent.

    ``step`` is read for two cases only: "connect" (no connection could be made) and
    "MAIL FROM" (the server's rate policy, or a kept connection found closed).
    """

    def __init__(
        self,
        code: int | None,
        reply: str,
        *,
        retry: bool = True,
        step: str = "",
        refused: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reply)
        self.step = step
        # RFC 3463 X.7.x is policy: a 450/452 4.7.x to MAIL FROM is a rate limit (Postfix anvil).
        self.slow_down = (
            step == "MAIL FROM" and code in (450, 451, 452) and reply.startswith("4.7.")
        )
        state = State.DEFERRED if retry else State.FAILED
        self.outcome = Outcome(state, code, reply, refused or {})


async def _local_hostname() -> str:
    """This machine's name for EHLO (looked up in a thread: it may take a DNS query)."""
    return await asyncio.to_thread(_fqdn)


@functools.cache
def _fqdn() -> str:
    return socket.getfqdn()


def _temporary(code: int) -> bool:
    return 400 <= code < 500


def _domains(letter: Letter) -> Iterator[str]:
    return (recipient.rpartition("@")[2] for recipient in letter.recipients)


@dataclass
class _Job:
    """A letter to try, and what earlier attempts left for this one."""

    letter: Letter
    attempt: int = 1
    put_back: int = 0  # times the server's limits sent it back untried
    key: tuple[str, ...] = ()  # the domains whose per-domain limits apply (`DomainQueues`)
    # For a retry of the recipients a server refused for now (452), the letter having gone to
    # the others: the permanent refusals so far. None for a letter not yet sent to anyone.
    partial: dict[str, str] | None = None


class _SendingMarks:
    """Commits the `sending` marks of the letters going out in one event-loop turn together.

    Each letter's mark is written at once and its data waits for the commit, which runs as the
    next callback of the loop: every letter that reached this point in the same turn shares it.
    The commit stays on the loop (SQLite's connection may not move to a thread): in WAL mode
    with synchronous=NORMAL it appends to the WAL without fsync, about 0.1-0.2 ms. What could
    stall the loop is SQLite's automatic checkpoint, which a commit runs when the WAL has grown
    past 1,000 pages and which fsyncs the database (measured 3-45 ms; the first commits after
    the queue, whose WAL holds the whole campaign, ran it). It is off while the run sends:
    every `CHECKPOINT_EVERY` letters a second connection, in a thread, checkpoints instead, and
    the WAL then starts again from its beginning.
    """

    def __init__(self, log: DeliveryLog) -> None:
        self.log = log
        self._commit: asyncio.Future[None] | None = None
        self._marked = 0
        self._checkpoint: asyncio.Future[None] | None = None

    async def mark(self, contact_id: str) -> None:
        """Log the letter as sending; return once that is committed."""
        self.log.mark_sending(contact_id, commit=False)
        self._marked += 1
        commit = self._commit
        if commit is None:
            loop = asyncio.get_running_loop()
            commit = self._commit = loop.create_future()
            loop.call_soon(self._flush)
        await asyncio.shield(commit)

    def _flush(self) -> None:
        commit, self._commit = self._commit, None
        assert commit is not None
        try:
            self.log.flush()
        except Exception as exc:  # noqa: BLE001 - every letter waiting gets the log's error
            commit.set_exception(exc)
            return
        commit.set_result(None)
        if self._marked >= CHECKPOINT_EVERY and (
            self._checkpoint is None or self._checkpoint.done()
        ):
            self._marked = 0
            self._checkpoint = asyncio.ensure_future(asyncio.to_thread(self.log.checkpoint))

    async def close(self) -> None:
        """Wait for a checkpoint still running."""
        if self._checkpoint is not None:
            await self._checkpoint


class _DomainQueues:
    """Letters read ahead, one queue per recipient domain, as an MTA's queue manager keeps them.

    A connection takes the next letter whose domains have a free slot, so each domain goes at
    its own limit and the run at their sum; domains take turns, so a large one cannot starve a
    small one. At most `LOOKAHEAD` letters, and `LOOKAHEAD_BYTES` of their data, are held. A domain whose letter was taken is busy
    until that letter has its slot: another connection takes another domain meanwhile.
    """

    def __init__(self, limiter: CampaignLimiter) -> None:
        self._limiter = limiter
        self._queues: dict[tuple[str, ...], deque[_Job]] = {}
        self._busy: Counter[str] = Counter()
        self.size = 0
        self.bytes = 0

    def full(self) -> bool:
        return self.size >= LOOKAHEAD or self.bytes >= LOOKAHEAD_BYTES

    def add(self, job: _Job, *, first: bool = False) -> None:
        queue = self._queues.setdefault(job.key, deque())
        if first:
            queue.appendleft(job)
        else:
            queue.append(job)
        self.size += 1
        self.bytes += len(job.letter.data)

    def ready(self) -> _Job | None:
        """The first letter of the first domain, in turn, whose slot is free now; taken out."""
        for key, queue in self._queues.items():
            if self._free(key) and self._limiter.domain_delay(key) <= 0:
                job = queue.popleft()
                del self._queues[key]
                if queue:
                    self._queues[key] = queue  # to the back: the others' turn first
                self.size -= 1
                self.bytes -= len(job.letter.data)
                self._busy.update(key)
                return job
        return None

    def delay(self) -> float | None:
        """Seconds before a queued letter's domains could be free; None when none is queued
        or only busy domains are (their release wakes the waiting connections)."""
        delays = [self._limiter.domain_delay(key) for key in self._queues if self._free(key)]
        return min(delays, default=None)

    def release(self, key: tuple[str, ...]) -> None:
        """The letter taken for these domains has its slot (or will not go now)."""
        for domain in key:
            self._busy[domain] -= 1
            if self._busy[domain] <= 0:
                del self._busy[domain]

    def _free(self, key: tuple[str, ...]) -> bool:
        return not any(self._busy[domain] for domain in key)


class _PutBack(Exception):
    """The server's limits, not the letter, stopped this attempt: try the letter again, uncharged."""


class _Run:
    """The shared state of one `send`: the letters, the retries waiting, the tally."""

    def __init__(
        self,
        sender: Sender,
        letters: Iterable[Letter],
        on_outcome: OnOutcome | None,
        stop: asyncio.Event,
    ) -> None:
        sending = sender.sending
        self.sending = sending
        self.log = sender.log
        self.connect = functools.partial(
            open_connection, sender.smtp, sending.timeout, sender._password
        )
        self.summary = SendSummary(started=time.time())
        self.marks = _SendingMarks(sender.log)
        self.error: Exception | None = None
        self.server = ServerLimits(sending.concurrency)
        shared = sender.limiter  # the rates are kept there, for every worker, not here
        # The per-domain rate is kept here too, even when shared: it gives each domain its own
        # queue, so a connection never waits for one domain's shared slot while letters to
        # others are ready. Other processes sending to a domain only make its shared slots
        # later, so this one never waits longer for it than the shared limit does.
        self._limiter = CampaignLimiter(
            None if shared else _with_margin(sending.rate),
            _with_margin(sending.per_domain_rate),
            server=self.server,
            shared=shared,
        )
        self._letters: Iterator[Letter] | None = iter(letters)
        self._queues = _DomainQueues(self._limiter)
        self._retries: list[tuple[float, int, _Job]] = []  # (due, order, job)
        self._order = itertools.count()
        self._on_outcome = on_outcome
        self._stop = stop
        self._halted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_flight = 0
        self._failures_in_row = 0
        self._changed = _Signal()  # a letter may be ready, or the run over
        self._connections_changed = _Signal()  # a connection may be free, or the run over
        self.connections = 0  # connections held by workers: open or being opened
        self.open_connections = 0

    async def execute(self) -> SendSummary:
        """Run the workers until the letters are settled or the run stops."""
        local_hostname = await _local_hostname()
        workers = [_Worker(self, local_hostname) for _ in range(self.sending.concurrency)]
        watcher = asyncio.ensure_future(self._stop.wait())
        watcher.add_done_callback(lambda _: self.halt())
        self.log.automatic_checkpoints(False)  # `_SendingMarks` checkpoints, from a thread
        try:
            await asyncio.gather(*(worker.work() for worker in workers))
            self.log.flush()
            await self.marks.close()
        finally:
            self.log.automatic_checkpoints(True)
            watcher.cancel()
            for worker in workers:
                worker.close()
        if self.error is not None:
            raise self.error
        self.summary.finished = time.time()
        self.summary.refused_connections = self.server.refused_connections
        self.summary.slow_downs = self.server.slow_downs
        return self.summary

    def stopped(self) -> bool:
        return self._halted.done() or self._stop.is_set()

    def halt(self) -> None:
        """Take no more letters and schedule no more retries."""
        if not self._halted.done():
            self._halted.set_result(None)
        self._notify()
        self._connections_changed.notify()

    def abort(self, error: Exception) -> None:
        """Stop the run because of ``error``; `execute` raises it once the workers are done."""
        if self.error is None:
            self.error = error
        self.halt()

    def _over(self) -> bool:
        return self.stopped() or (
            self._letters is None
            and not self._queues.size
            and not self._retries
            and not self._in_flight
        )

    async def take_connection(self) -> bool:
        """Wait until the server's limits allow one more connection; False if the run is over."""
        server = self.server
        while not self._over():
            delay = server.connect_after - time.monotonic()
            if self.connections < server.connections and delay <= 0:
                self.connections += 1
                return True
            # Woken only when a connection is given back, more are allowed or the run ends,
            # not at every letter: most workers may wait here all run long.
            await self._connections_changed.wait(delay if delay > 0 else None)
        return False

    def give_back_connection(self) -> None:
        self.connections -= 1
        self._connections_changed.notify()

    def too_many_connections(self) -> bool:
        """Whether a connection should close, the server having asked for fewer."""
        return self.connections > self.server.connections

    async def next_job(self) -> _Job | None:
        """The next letter whose domains have a free slot; None when the run is over."""
        queues = self._queues
        while not self.stopped():
            now = time.monotonic()
            while self._retries and self._retries[0][0] <= now:
                queues.add(heapq.heappop(self._retries)[2], first=True)
            job = queues.ready()
            while job is None and self._letters is not None and not queues.full():
                letter = next(self._letters, None)
                if letter is None:
                    self._letters = None
                else:
                    queues.add(self._job(letter))
                    job = queues.ready()
            if job is not None:
                self._in_flight += 1
                return job
            if self._over():
                return None
            waits = [queues.delay()]
            if self._retries:
                waits.append(self._retries[0][0] - now)
            await self._wait(min((w for w in waits if w is not None), default=None))
        return None

    def _job(
        self, letter: Letter, attempt: int = 1, partial: dict[str, str] | None = None
    ) -> _Job:
        key = self._limiter.domain_key(_domains(letter))
        return _Job(letter, attempt, key=key, partial=partial)

    async def slot(self, job: _Job) -> bool:
        """Wait until the rate limits let the letter go; False if the run stopped meanwhile."""
        domains = tuple(_domains(job.letter))
        if self._limiter.delay(domains) <= 0:  # a free slot: taken at once, nothing to watch
            await self._limiter.acquire(domains)
            self.release(job)
        else:
            self.log.flush()  # the outcomes so far are committed before any wait
            slot = asyncio.ensure_future(self._limiter.acquire(domains))
            try:
                await asyncio.wait((slot, self._halted), return_when=asyncio.FIRST_COMPLETED)
            finally:
                slot.cancel()
                self.release(job)
        if self.stopped():
            self._in_flight -= 1  # the letter stays as the log has it
            return False
        return True

    def release(self, job: _Job) -> None:
        """The letter's domains are free for other connections to take letters of."""
        if job.key:
            self._queues.release(job.key)
            self._notify()

    def put_back(self, job: _Job) -> None:
        """Return a letter the server's limits kept from going; it goes first when they allow."""
        self._in_flight -= 1
        job.put_back += 1
        if not self.stopped():
            self._queues.add(job, first=True)
        self._notify()

    def finish(self, job: _Job, outcome: Outcome, *, unavailable: bool = False) -> None:
        """Record how an attempt ended, schedule its retry, and keep the tally.

        ``unavailable``: the server could not be reached or refused every connection.
        """
        self._in_flight -= 1
        letter, attempt = job.letter, job.attempt
        summary = self.summary
        if attempt > 1:
            summary.deferred -= 1
        later: tuple[str, ...] = ()
        if job.partial is not None:
            lost = outcome.state is State.DEFERRED and not outcome.refused
            outcome = _after_partial(job.partial, outcome)
            later = job.letter.recipients if lost else ()
        later = _refused_for_now(outcome) or later
        if later and self.stopped():
            later = ()  # sent to the others; the rest stay refused, as the log says
        retry = (outcome.state is State.DEFERRED or later) and attempt <= self.sending.max_retries
        if outcome.state is State.DEFERRED and not retry:
            outcome = Outcome(State.FAILED, outcome.code, outcome.reply, outcome.refused)
        self.log.mark_outcome(letter.contact_id, outcome)
        if retry:
            summary.deferred += 1
            if outcome.state is State.SENT:
                # Sent to some: only those refused for now are tried again; the log says sent.
                kept = {r: reply for r, reply in outcome.refused.items() if r not in later}
                job = _Job(dataclasses.replace(letter, recipients=later), partial=kept)
                outcome = Outcome(State.DEFERRED, outcome.code, _for_now(later), outcome.refused)
            if not self.stopped():
                due = time.monotonic() + retry_delay(self.sending.retry_delay, attempt)
                later_job = self._job(job.letter, attempt + 1, partial=job.partial)
                heapq.heappush(self._retries, (due, next(self._order), later_job))
        elif outcome.state is State.SENT:
            summary.sent += 1
            allowed = self.server.connections
            self.server.accepted()
            if self.server.connections > allowed:
                self._connections_changed.notify()
            self._failures_in_row = 0
        elif outcome.state is State.UNCERTAIN:
            summary.uncertain += 1
        else:
            summary.failed += 1
        if unavailable or _counts_as_failure(outcome):
            self._count_failure(outcome)
        self._notify()
        if self._over():
            self._connections_changed.notify()
        if self._on_outcome is not None:
            self._on_outcome(letter, outcome)

    def _count_failure(self, outcome: Outcome) -> None:
        self._failures_in_row += 1
        limit = self.sending.pause_after_failures
        if limit and self._failures_in_row >= limit and self.summary.stopped_reason is None:
            reply = f"{outcome.code} {outcome.reply}" if outcome.code else outcome.reply
            self.summary.stopped_reason = (
                f"paused after {limit} failures in a row (sending.pause_after_failures); the"
                f" server may be refusing us: {reply}. Run send again to go on with the letters"
                " left; set pause_after_failures = 0 never to pause"
            )
            self.halt()

    def _notify(self) -> None:
        """Wake the workers waiting for a letter to be ready or for the run to end."""
        self._changed.notify()

    async def _wait(self, timeout: float | None) -> None:
        self.log.flush()  # the outcomes so far are committed before any wait
        await self._changed.wait(timeout)


class _Signal:
    """Wakes every task waiting on it, at once; cheap when none waits."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._waiting = 0

    def notify(self) -> None:
        if self._waiting:
            self._event.set()
            self._event = asyncio.Event()

    async def wait(self, timeout: float | None) -> None:
        """Until notified, or ``timeout`` seconds (None: no limit)."""
        event = self._event
        self._waiting += 1
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            self._waiting -= 1


def _after_partial(kept: dict[str, str], outcome: Outcome) -> Outcome:
    """The outcome of a letter already sent to some, after a retry for the others.

    It stays sent whatever the retry met; the refusals are those kept plus the retry's.
    """
    refused = {**kept, **outcome.refused}
    if outcome.state is State.UNCERTAIN:
        return Outcome(State.UNCERTAIN, outcome.code, outcome.reply, refused)
    if outcome.state is State.SENT:
        return Outcome(State.SENT, outcome.code, outcome.reply, refused)
    reply = f"sent to the other recipients; {outcome.reply}"
    return Outcome(State.SENT, outcome.code, reply, refused)


def _refused_for_now(outcome: Outcome) -> tuple[str, ...]:
    """The recipients of a letter sent to others that the server refused for now (4xx)."""
    if outcome.state is not State.SENT:
        return ()
    return tuple(r for r, reply in outcome.refused.items() if reply.startswith("4"))


def _for_now(recipients: tuple[str, ...]) -> str:
    return f"sent to the other recipients; {', '.join(recipients)} refused for now, tried again"


def _counts_as_failure(outcome: Outcome) -> bool:
    """Whether an outcome counts toward pause_after_failures.

    Only permanent refusals and an unreachable or vanishing server do (and a server refusing
    every connection, which `finish` is told): a temporary refusal (4xx) is the server's pace,
    which retries and `ServerLimits` follow.
    """
    if outcome.state is State.FAILED:
        return outcome.code is None or not _temporary(outcome.code)
    return outcome.state is State.DEFERRED and outcome.code is None


class _Worker:
    """Sends letters one after another over one connection, opened lazily and reused."""

    def __init__(self, run: _Run, local_hostname: str) -> None:
        self.run = run
        self.local_hostname = local_hostname
        self.connection: Connection | None = None
        self.holds_connection = False  # counted in the run's connections
        self.used = 0  # letters tried on this connection
        self.needs_reset = False  # a transaction failed; RSET before the next one

    async def work(self) -> None:
        """Take letters until the run is over, holding a connection while the server allows."""
        run = self.run
        try:
            while self.holds_connection or await run.take_connection():
                self.holds_connection = True
                job = await run.next_job()
                if job is None:
                    break
                await self._attempt(job)
                if self.connection is not None and run.too_many_connections():
                    await self._quit()
                if self.connection is None:
                    self._give_back()
            await self._quit()
        except Exception as exc:  # noqa: BLE001 - a full disk, a refused login, a bug: all stop
            run.abort(exc)
        finally:
            self._give_back()

    def _give_back(self) -> None:
        if self.holds_connection:
            self.holds_connection = False
            self.run.give_back_connection()

    def close(self) -> None:
        connection = self._drop()
        if connection is not None:
            connection.close()

    async def _quit(self) -> None:
        connection = self._drop()
        if connection is not None:
            await connection.quit()

    def _drop(self) -> Connection | None:
        """Stop using the connection (no longer counted open); return it to be closed."""
        connection, self.connection = self.connection, None
        if connection is not None:
            self.run.open_connections -= 1
        return connection

    async def _connection(self) -> Connection:
        """The connection for the next letter: reused, or a new one when due or lost."""
        connection = self.connection
        if connection is not None and self.needs_reset:
            self.needs_reset = False
            if not await connection.reset():
                self.close()
                connection = None
        if connection is not None and (
            not connection.is_open or self.used >= self.run.sending.max_messages_per_connection
        ):
            await self._quit()
            connection = None
        if connection is None:
            connection = await self._open()
        self.used += 1
        return connection

    async def _open(self) -> Connection:
        run = self.run
        try:
            connection = await run.connect(self.local_hostname)
        except Unavailable as unavailable:
            others = run.connections - 1
            if unavailable.code is not None and unavailable.step == "connect":
                # "Too many connections": the server's limit, not this letter's fault.
                run.server.connection_refused(run.open_connections)
                if others > 0:
                    raise _PutBack from None
            raise _Failed(unavailable.code, unavailable.reply, step=unavailable.step) from None
        run.server.connected()
        run.open_connections += 1
        self.connection, self.used = connection, 0
        return connection

    async def _attempt(self, job: _Job) -> None:
        """One try at one letter, its outcome handed to the run.

        The connection is made ready before the letter takes its rate slot, so that the time
        from the slot to the server is one write, not a connection set-up.
        """
        run, letter = self.run, job.letter
        try:
            try:
                connection = await self._connection()
            finally:
                if self.connection is None:
                    run.release(job)
            if not await run.slot(job):
                return
            connection, refused = await self._envelope(connection, letter)
        except _PutBack:
            run.put_back(job)
            return
        except _Failed as failed:
            if failed.slow_down and job.put_back < MAX_PUT_BACK:
                run.server.slow_down()
                run.put_back(job)
                return
            # The log counts every attempt, also those that never reached the data; the outcome
            # is written right after this, with no await in between, and committed later.
            run.log.mark_sending(letter.contact_id, commit=False)
            # No connection could be opened, none other is open: the server is unavailable.
            run.finish(job, failed.outcome, unavailable=failed.step == "connect")
            return
        run.finish(job, await self._data(connection, letter, refused))

    async def _envelope(
        self, connection: Connection, letter: Letter
    ) -> tuple[Connection, dict[str, str]]:
        """MAIL FROM, RCPT TO and DATA on a ready connection; the refused recipients."""
        reused = self.used > 1
        try:
            return connection, await self._transaction(connection, letter)
        except _Failed as failed:
            gone = failed.step == "MAIL FROM" and failed.outcome.code in (None, 421)
            if not (reused and gone and failed.outcome.state is State.DEFERRED):
                raise
        # The server dropped a connection we had kept open; nothing was sent, so try a fresh one.
        connection = await self._connection()
        return connection, await self._transaction(connection, letter)

    def _mail_options(self, connection: Connection, letter: Letter) -> list[bytes]:
        """MAIL FROM parameters, or `_Failed` when this server cannot take the letter."""
        options = []
        if letter.smtputf8:
            if not connection.smtputf8:
                reply = "server does not support SMTPUTF8 (non-ASCII address)"
                raise _Failed(None, reply, retry=False)
            options.append(b"SMTPUTF8")
        if connection.size_limit:
            if len(letter.data) > connection.size_limit:
                reply = (
                    f"message too large for the server: {len(letter.data):,} bytes, it accepts"
                    f" at most {connection.size_limit:,} (SIZE)"
                )
                raise _Failed(None, reply, retry=False)
            options.append(b"SIZE=%d" % len(letter.data))
        if connection.eight_bit and not letter.data.isascii():
            options.append(b"BODY=8BITMIME")
        return options

    def _commands(self, connection: Connection, letter: Letter) -> list[bytes]:
        """MAIL FROM, one RCPT TO per recipient, and DATA."""
        options = self._mail_options(connection, letter)
        encoding = "utf-8" if letter.smtputf8 else "ascii"
        try:
            mail = b" ".join([b"MAIL FROM:<%s>" % letter.sender.encode(encoding), *options])
            rcpts = [b"RCPT TO:<%s>" % address.encode(encoding) for address in letter.recipients]
        except UnicodeEncodeError:
            reply = "non-ASCII address in a letter not marked as needing SMTPUTF8"
            raise _Failed(None, reply, retry=False) from None
        commands = [mail, *rcpts, b"DATA"]
        if any(_CONTROL.search(command) for command in commands):
            raise _Failed(None, "control character in an address", retry=False)
        return commands

    async def _transaction(self, connection: Connection, letter: Letter) -> dict[str, str]:
        """The envelope up to the server's 354; raises `_Failed` unless it is waiting for the data."""
        commands = self._commands(connection, letter)
        try:
            replies = await connection.envelope(commands)
        except Unavailable as unavailable:
            raise _Failed(None, unavailable.reply, step=unavailable.step) from None
        try:
            return self._accepted(letter, replies)
        except _Failed:
            if replies[-1].code == 354:
                self.close()  # pipelined DATA accepted although the envelope failed: never send
            raise

    def _accepted(self, letter: Letter, replies: list[Reply]) -> dict[str, str]:
        """The refused recipients when the replies let the data go; else raises `_Failed`."""
        count = len(letter.recipients)
        mail, rcpts, data = replies[0], replies[1 : count + 1], replies[count + 1 :]
        if mail.code != 250:
            raise self._refused(mail, step="MAIL FROM")
        refused: dict[str, str] = {}
        codes: list[int] = []
        for recipient, response in zip(letter.recipients, rcpts):
            if response.code == 421:
                raise self._refused(response)
            if response.code not in (250, 251):
                refused[recipient] = str(response)
                codes.append(response.code)
        if len(codes) == count:
            self.needs_reset = True
            temporary = [code for code in codes if _temporary(code)]
            details = "; ".join(f"{address}: {reply}" for address, reply in refused.items())
            reply = f"every recipient refused: {details}"
            raise _Failed((temporary or codes)[-1], reply, retry=bool(temporary), refused=refused)
        if data[0].code != 354:
            raise self._refused(data[0])
        return refused

    def _refused(self, response: Reply, *, step: str = "") -> _Failed:
        """The transaction failed on a reply; the session is reset, or dropped after a 421."""
        if response.code == 421:
            self.close()
        else:
            self.needs_reset = True
        retry = _temporary(response.code)
        return _Failed(response.code, response.text, retry=retry, step=step)

    async def _data(
        self, connection: Connection, letter: Letter, refused: dict[str, str]
    ) -> Outcome:
        """The message once the server waits for it, with the letter logged as sending."""
        log = self.run.log
        try:
            response = await connection.data(
                letter.data, functools.partial(self.run.marks.mark, letter.contact_id)
            )
        except Unavailable as unavailable:
            self.close()
            return _Failed(None, unavailable.reply).outcome
        except Uncertain as uncertain:
            self.close()
            return Outcome(State.UNCERTAIN, None, uncertain.reply, refused)
        except asyncio.CancelledError:
            self.close()
            log.mark_outcome(letter.contact_id, _INTERRUPTED)
            raise
        if 200 <= response.code < 300:
            return Outcome(State.SENT, response.code, response.text, refused)
        return self._refused(response).outcome
