"""A campaign's send workflow: plan and queue every letter, confirm, then send from the queue.

`send_campaign` is what `mailaction send` and `mailaction demo` run, and what a Python user
calls. The plan validates and builds every letter and writes the run into the delivery log in
one transaction, committed only once the run is confirmed; delivery then reads only from the log.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from itertools import islice
from pathlib import Path

from .accounts import account_secret
from .campaign import Campaign, ValidationResult
from .config import Config
from .deliverylog import PROOF_SUFFIX, DeliveryLog, Entry, State, is_database_url, open_log
from .dkim import letter_signer
from .errors import ConfigError, DeliveryLogError, InvalidCampaign, SendingStopped
from .message import Letter, proof_copy
from .multiaccount import DAY, AccountPool, AccountResult, daily_room
from .parallel import cores
from .sender import SendSummary, check_server
from .suppression import recipient_filter
from .workers import (
    LEASE,
    Progress,
    RunResult,
    Standby,
    WorkerJob,
    claimed,
    deliver_in_process,
    deliver_in_workers,
    send_letters,
    worker_id,
)

__all__ = ["RunResult", "send_letters"]  # also here, beside the workflow that runs them

EXAMPLES = 10  # rows named in a plan's notes ("rows 4, 9, ...")
SAMPLE = 5  # letters a plan keeps to show before sending
LOOKUP_BATCH = 500  # rows whose log entries the plan looks up in one statement


class Decision(Enum):
    """What a run does with one valid letter."""

    SEND = "send"
    ALREADY_SENT = "already sent"
    HELD_UNCERTAIN = "uncertain: held back (use --resend-uncertain)"
    HELD_FAILED = "failed before: held back (use --retry-failed)"


@dataclass(frozen=True)
class SendOptions:
    """The choices a user makes for one run."""

    dry_run: bool = False
    limit: int | None = None
    test_to: str | None = None
    resend_uncertain: bool = False
    retry_failed: bool = False
    workers: int = 1  # processes sending from the queue; 0: one per core
    lease: float = LEASE  # seconds a silent worker keeps its letters before others take them
    now: Callable[[], float] = time.time  # the clock daily limits are counted by

    def processes(self) -> int:
        """How many processes send from the queue: ``workers``, or one per core for 0."""
        return self.workers or cores()


@dataclass
class Rows:
    """How many letters a note concerns, and the spreadsheet rows of the first few."""

    count: int = 0
    rows: list[int] = field(default_factory=list)

    def add(self, row: int) -> None:
        self.count += 1
        if len(self.rows) < EXAMPLES:
            self.rows.append(row)

    def __bool__(self) -> bool:
        return self.count > 0


@dataclass
class SendPlan:
    """What a run will do, decided (and queued) before anything is sent."""

    validation: ValidationResult = field(default_factory=ValidationResult)
    to_send: int = 0  # letters this run sends
    new: int = 0  # letters queued for the first time (rows the log did not hold)
    rebuilt: int = 0  # queued, unsent letters whose row or template changed: stored anew
    already_sent: int = 0
    held_uncertain: int = 0
    held_failed: int = 0
    left_for_later: int = 0  # queued, beyond --limit or the daily limit
    withdrawn: int = 0  # queued, unsent letters whose contact left the list: taken off the queue
    suppressed: int = 0  # letters to an address on the suppression list: never queued
    recovered: int = 0  # letters in flight when an earlier run stopped, now `uncertain`
    had_letters: bool = False  # the log held letters of this campaign before the plan
    changed_after_send: Rows = field(default_factory=Rows)  # edited since sent: not re-sent
    # Letters already sent under another key (id column or campaign renamed): (row, that entry).
    twins: list[tuple[int, Entry]] = field(default_factory=list)
    twin_count: int = 0
    sample: list[Letter] = field(default_factory=list)  # the first letters, to show before sending

    @property
    def held(self) -> int:
        return self.held_uncertain + self.held_failed


def campaign_key(name: str, test_to: str | None) -> str:
    """The log key: proof copies are recorded apart from the real campaign."""
    return f"{name}{PROOF_SUFFIX}" if test_to else name


def real_campaigns(keys: list[str]) -> list[str]:
    """A log's campaign keys without the proof runs (all of them if there are only proofs)."""
    return [key for key in keys if not key.endswith(PROOF_SUFFIX)] or keys


def decide(entry: Entry | None, letter: Letter, options: SendOptions) -> Decision:
    """Resume rules: a sent letter never goes again; uncertain and failed ones only when asked."""
    if entry is None or options.test_to:
        return Decision.SEND
    if entry.state in (State.SENT, State.BOUNCED):  # a bounced letter was sent: never again
        return Decision.ALREADY_SENT
    if entry.state in (State.UNCERTAIN, State.SENDING) and not options.resend_uncertain:
        return Decision.HELD_UNCERTAIN
    if entry.state is State.FAILED and not options.retry_failed and entry.fingerprint == letter.fingerprint:
        return Decision.HELD_FAILED
    return Decision.SEND


class Run:
    """One `send`: plans from the campaign and the log, queueing the letters; then streams them.

    With ``write`` false (a dry run on a log in use) the plan only counts and writes nothing.
    """

    def __init__(
        self, campaign: Campaign, log: DeliveryLog, options: SendOptions, *, write: bool = True
    ) -> None:
        self.campaign = campaign
        self.log = log
        self.options = options
        self.write = write
        self.allowed = self._allowed()
        self.sign = letter_signer(campaign.config.dkim)
        self.held_back = recipient_filter(campaign.config.campaign, proof=bool(options.test_to))

    def _allowed(self) -> int | None:
        limits = [n for n in (self.options.limit, self._daily_room()) if n is not None]
        return min(limits) if limits else None

    def _daily_room(self) -> int | None:
        config = self.campaign.config
        if config.accounts and not self.options.dry_run:
            return daily_room(config, self.log, self.options.now())
        daily = config.sending.daily_limit
        if daily is None or self.options.dry_run:
            return daily
        return max(daily - self.log.sent_since(self.options.now() - DAY), 0)

    def plan(self) -> SendPlan:
        """Validate every row and queue the letters to send, in the log's open transaction.

        The caller commits (`DeliveryLog.flush`) once the run is confirmed, or rolls back.
        """
        plan = SendPlan()
        self.log.plan_lock()
        counts = self.log.counts()
        plan.had_letters = sum(counts.values()) > 0
        proof_to = self.options.test_to
        proof = proof_to is not None
        tally = not proof and counts[State.PENDING] + counts[State.DEFERRED] > 0
        if tally:
            self.log.start_tally()
        check_twins = not proof and self.log.has_delivered()
        rows = self.campaign.rows()
        # A batch of rows at a time: one statement looks up what the log holds for them all.
        while chunk := list(islice(rows, LOOKUP_BATCH)):
            letters: list[Letter] = []
            for prepared in chunk:
                plan.validation.add(prepared)
                if prepared.letter is not None:
                    letters.append(
                        prepared.letter if proof_to is None else proof_copy(prepared.letter, proof_to)
                    )
            ids = [letter.contact_id for letter in letters]
            logged = self.log.look_up(ids) if plan.had_letters and ids else {}
            if tally:
                self.log.note(ids)
            for letter in letters:
                entry, stored = logged.get(letter.contact_id, (None, False))
                if entry is None and check_twins:
                    twin = self.log.twin(letter)
                    if twin is not None:
                        plan.twin_count += 1
                        if len(plan.twins) < EXAMPLES:
                            plan.twins.append((letter.row, twin))
                        continue
                self._decide(plan, letter, entry, stored)
        if tally:
            plan.withdrawn = self.log.withdraw_unnoted(count_only=not self.write)
        return plan

    def _decide(self, plan: SendPlan, letter: Letter, entry: Entry | None, stored: bool) -> None:
        """Count one valid letter in the plan and queue it when it is to go; ``stored``: the log
        holds the message of ``entry``."""
        decision = decide(entry, letter, self.options)
        changed = entry is not None and entry.fingerprint != letter.fingerprint
        if decision is not Decision.SEND:
            if decision is Decision.ALREADY_SENT:
                plan.already_sent += 1
            elif decision is Decision.HELD_UNCERTAIN:
                plan.held_uncertain += 1
            else:
                plan.held_failed += 1
            if changed:
                plan.changed_after_send.add(letter.row)
            if self.write and entry is not None and entry.row != letter.row:
                self.log.move(letter.contact_id, letter.row)
            return
        if self.held_back(letter.recipients):
            plan.suppressed += 1
            if self.write and entry is not None:
                self.log.withdraw(letter.contact_id)
            return
        later = self.allowed is not None and plan.to_send >= self.allowed
        if later and self.options.test_to:
            return  # proof runs queue only the copies they send
        if later:
            plan.left_for_later += 1
        else:
            plan.to_send += 1
            if len(plan.sample) < SAMPLE:
                plan.sample.append(letter)
        if entry is None:
            plan.new += 1
        elif changed:
            plan.rebuilt += 1
        if self.write:
            self._queue(letter, entry, changed or not stored)

    def _queue(self, letter: Letter, entry: Entry | None, stale: bool) -> None:
        """Queue the letter: anew when the log holds no entry, or a stale one (changed, or
        without its message); else the entry as it is stored."""
        if entry is None or stale or self.options.test_to:
            self.log.enqueue(letter, entry)
        elif entry.state is not State.PENDING or entry.row != letter.row:
            self.log.requeue(letter.contact_id, letter.row)

    def upto(self) -> tuple[int, str] | None:
        """The last queued letter (row, contact id) this run may send; None: all of them."""
        return None if self.allowed is None else self.log.queue_end(self.allowed)

    def letters(self) -> Iterator[Letter]:
        """The queued letters this run sends, claimed in spreadsheet order, dated and signed
        as they go.

        The log claims them for this process as a worker (see `DeliveryLog.join`).
        """
        if self.log.worker is None:
            self.log.join(worker_id())
        return claimed(self.log, lease=self.options.lease, upto=self.upto(), sign=self.sign)


@dataclass
class Hooks:
    """What a caller sees and decides during `send_campaign`; every hook is optional.

    ``plan`` sees the plan before the question; ``confirm`` answers it (no hook: send);
    ``password`` is asked after confirmation (no hook: no login); ``progress`` is given the
    number of letters to send and opens a context around the sending that yields a callback
    told each time letters reach a final state (state, how many); ``interrupt`` hears each Ctrl-C (1: stopping after the letters in flight,
    2: stopping now).
    """

    plan: Callable[[SendPlan], None] | None = None
    confirm: Callable[[SendPlan], bool] | None = None
    password: Callable[[], str | None] | None = None
    progress: Progress | None = None
    interrupt: Callable[[int], None] | None = None


@dataclass
class CampaignResult:
    """How a `send_campaign` ended."""

    plan: SendPlan
    log_path: Path | str  # a SQLite file, or a PostgreSQL URL
    campaign: str  # the log key: the campaign name, with " [test]" for proof runs
    sent: bool = False  # whether sending started (False: dry run, nothing to send, declined)
    declined: bool = False
    summary: SendSummary = field(default_factory=SendSummary)
    interrupted: bool = False
    counts: dict[State, int] = field(default_factory=lambda: dict.fromkeys(State, 0))
    accounts: list[AccountResult] = field(default_factory=list)  # with several [[smtp]]

    @property
    def problems(self) -> bool:
        """Letters failed in this run, the run stopped before its end, or letters are uncertain."""
        summary = self.summary
        return bool(summary.failed or summary.stopped_reason or self.counts[State.UNCERTAIN])


def send_campaign(
    config: Config, options: SendOptions | None = None, hooks: Hooks | None = None
) -> CampaignResult:
    """Validate and queue every letter of the campaign, confirm, then send from the queue.

    Raises InvalidCampaign (nothing queued, nothing sent) when any row has a problem,
    SMTPSetupError when the server cannot be used, SendingStopped when the delivery log cannot
    be written part-way.
    """
    options = options or SendOptions()
    hooks = hooks or Hooks()
    workers = options.processes()
    early = workers if workers > 1 and not config.accounts and not options.dry_run else 0
    with Standby(early) as standby:  # before the contacts are read and the log is opened
        return _send(config, options, hooks, standby)


def _send(config: Config, options: SendOptions, hooks: Hooks, standby: Standby) -> CampaignResult:
    campaign = Campaign(config, key=campaign_key(config.campaign.name, options.test_to))
    with _open_log(config, campaign.key, options.dry_run) as log:
        result = CampaignResult(SendPlan(), log.location, log.campaign)
        keep_days = config.campaign.keep_letters_days
        if not options.dry_run and keep_days is not None:
            log.expire_messages(time.time() - keep_days * DAY)
        recovered = [] if options.dry_run else log.recover_interrupted(_silent_for(log, options))
        run = Run(campaign, log, options, write=not options.dry_run)
        try:
            plan = result.plan = _checked_plan(run)
            plan.recovered = len(recovered)
            if hooks.plan is not None:
                hooks.plan(plan)
            if options.dry_run or plan.to_send == 0:
                _end_plan(log, options)
                return result
            if hooks.confirm is not None and not hooks.confirm(plan):
                log.rollback()
                result.declined = True
                return result
        except BaseException:
            log.rollback()
            raise
        log.commit_queue()  # the run is confirmed: the queue is committed as a whole
        _send_queued(config, run, hooks, result, standby)
        result.counts = log.counts()
    return result


def _end_plan(log: DeliveryLog, options: SendOptions) -> None:
    """A run that sends nothing keeps only its withdrawals and moved rows (none for a dry run)."""
    if options.dry_run:
        log.rollback()
    else:
        log.flush()


def _silent_for(log: DeliveryLog, options: SendOptions) -> float | None:
    """How long a worker must be silent to be taken for dead when a run starts: a locked file
    has no other worker (None: every one is dead); a shared database has its lease."""
    return options.lease if is_database_url(log.location) else None


def _send_queued(
    config: Config, run: Run, hooks: Hooks, result: CampaignResult, standby: Standby
) -> None:
    options = run.options
    workers = options.processes()
    pool = None
    if config.accounts:
        if workers != 1:
            raise ConfigError(
                "several [[smtp]] accounts send from one process: leave out --workers"
            )
        pool = AccountPool(config, run.log, now=options.now())
        pool.check()
        result.accounts = pool.results
        password = None
    else:
        password = account_secret(config.smtp, hooks.password)
        asyncio.run(check_server(config.smtp, config.sending, password))
    shared = is_database_url(run.log.location)
    job = WorkerJob(
        config, run.log.location, run.log.campaign, password, run.upto(), options.lease,
        shared_limits=shared or workers > 1,
    )  # fmt: skip
    total = min(result.plan.to_send, run.allowed if run.allowed is not None else result.plan.to_send)
    result.sent = True
    try:
        if workers == 1:
            outcome = deliver_in_process(
                job, run.log, hooks.progress, total, hooks.interrupt, sender=pool
            )
        else:
            outcome = deliver_in_workers(
                job, run.log, workers, hooks.progress, total, hooks.interrupt, standby
            )
    except DeliveryLogError as exc:
        raise SendingStopped(
            f"{exc}; sending stopped, some letters may have gone out: see `mailaction report`"
        ) from None
    result.summary = outcome.summary
    result.interrupted = outcome.interrupted


def _checked_plan(run: Run) -> SendPlan:
    """The run's plan, or InvalidCampaign when any row has a problem."""
    plan = run.plan()
    checked = plan.validation
    if checked.invalid_rows:
        more = checked.problem_count - len(checked.problems)
        raise InvalidCampaign(
            f"{checked.problem_count} problem(s) in {checked.invalid_rows} row(s)"
            + (f" ({more} not shown)" if more else "")
            + "; nothing was sent. Run `mailaction validate` after fixing them.",
            checked.problems,
        )
    return plan


@contextmanager
def _open_log(config: Config, key: str, dry_run: bool) -> Iterator[DeliveryLog]:
    """The campaign's log, locked for sending; a dry run without a log uses a throwaway one."""
    path = config.campaign.log
    assert path is not None
    if isinstance(path, str):
        with open_log(path, key) as log:
            yield log
        return
    if dry_run and not path.exists():
        with (
            tempfile.TemporaryDirectory() as scratch,
            DeliveryLog(Path(scratch) / "dry-run.sqlite", key) as log,
        ):
            yield log
        return
    with DeliveryLog(path, key, lock=not dry_run) as log:
        yield log
