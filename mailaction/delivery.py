"""Plans a `send` run from the campaign and its delivery log, then runs the sender."""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import Enum

from .campaign import Campaign, ValidationResult
from .deliverylog import DeliveryLog, Entry, Outcome, State
from .dkim import letter_signer
from .message import Letter, restamped
from .sender import Sender, SendSummary

DAY = 86_400.0
# A plan keeps the letters it chose, so that sending does not render and build them again, up to
# these bounds; the letters beyond them are built again from the campaign.
KEPT_LETTERS = 20_000
KEPT_BYTES = 64 * 2**20


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


@dataclass
class SendPlan:
    """What a run will do, decided before anything is sent."""

    validation: ValidationResult = field(default_factory=ValidationResult)
    to_send: int = 0
    already_sent: int = 0
    held_uncertain: int = 0
    held_failed: int = 0
    left_for_later: int = 0  # beyond --limit or the daily limit
    changed_after_send: list[int] = field(default_factory=list)  # rows, letter edited since sent
    # Logged as pending (never tried) by an earlier run, but no longer in the contact list.
    gone: set[str] = field(default_factory=set)
    sample: list[Letter] = field(default_factory=list)  # the first letters, to show before sending

    @property
    def held(self) -> int:
        return self.held_uncertain + self.held_failed


PROOF_SUFFIX = " [test]"


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


def _changed(entry: Entry | None, letter: Letter) -> bool:
    return entry is not None and entry.fingerprint != letter.fingerprint


class Run:
    """One `send`: plans from the campaign and the log, then streams the chosen letters."""

    def __init__(self, campaign: Campaign, log: DeliveryLog, options: SendOptions) -> None:
        self.campaign = campaign
        self.log = log
        self.options = options
        self.allowed = self._allowed()
        self.sign = letter_signer(campaign.config.dkim)  # after restamping: the Date is signed
        self._kept: list[tuple[Letter, Entry | None]] = []  # the first letters to send or log
        self._kept_bytes = 0
        self._kept_all = False  # the plan kept every letter it chose to send or leave for later

    def _keep(self, letter: Letter, entry: Entry | None) -> None:
        size = self._kept_bytes + len(letter.data)
        if self._kept_all and len(self._kept) < KEPT_LETTERS and size <= KEPT_BYTES:
            self._kept.append((letter, entry))
            self._kept_bytes = size
        else:
            self._kept_all = False

    def _allowed(self) -> int | None:
        limits = [n for n in (self.options.limit, self._daily_room()) if n is not None]
        return min(limits) if limits else None

    def _daily_room(self) -> int | None:
        daily = self.campaign.config.sending.daily_limit
        if daily is None or self.options.dry_run:
            return daily
        return max(daily - self.log.sent_since(time.time() - DAY), 0)

    def _letter(self, letter: Letter) -> Letter:
        if self.options.test_to:
            return replace(letter, recipients=(self.options.test_to,))
        return letter

    def _decide(self, letter: Letter) -> tuple[Letter, Entry | None, Decision]:
        letter = self._letter(letter)
        entry = self.log.get(letter.contact_id)
        return letter, entry, decide(entry, letter, self.options)

    def plan(self) -> SendPlan:
        """Validate every row and count what would happen, without writing to the log."""
        plan = SendPlan()
        plan.gone = set() if self.options.test_to else self.log.untried()
        self._kept, self._kept_bytes, self._kept_all = [], 0, True
        for prepared in self.campaign.rows():
            plan.validation.add(prepared)
            if prepared.letter is None:
                continue
            plan.gone.discard(prepared.letter.contact_id)
            letter, entry, decision = self._decide(prepared.letter)
            if decision is Decision.SEND:
                self._keep(letter, entry)
                if self.allowed is not None and plan.to_send >= self.allowed:
                    plan.left_for_later += 1
                    continue
                plan.to_send += 1
                if len(plan.sample) < 5:
                    plan.sample.append(letter)
            elif decision is Decision.ALREADY_SENT:
                plan.already_sent += 1
            elif decision is Decision.HELD_UNCERTAIN:
                plan.held_uncertain += 1
            else:
                plan.held_failed += 1
            if decision is not Decision.SEND and _changed(entry, letter):
                plan.changed_after_send.append(letter.row)
        return plan

    def letters(self) -> Iterator[Letter]:
        """The letters to send, each registered in the log (as pending) just before it is yielded.

        The letters beyond --limit or the daily limit are registered as pending after the last
        one allowed, so that the report counts the whole campaign.
        """
        sent = 0
        for letter, entry, decision in self._decisions():
            if decision is not Decision.SEND:
                continue
            if self.allowed is not None and sent >= self.allowed:
                if self.options.test_to:
                    return
                if entry is None:
                    self.log.register(letter)
                continue
            if entry is None:
                self.log.register(letter)
            elif _changed(entry, letter) or self.options.test_to:
                self.log.update_letter(letter)
            sent += 1
            yield self.sign(letter)

    def _decisions(self) -> Iterator[tuple[Letter, Entry | None, Decision]]:
        """The letters the plan kept, then (unless it kept all) the campaign's letters after them."""
        last_row = 0
        for letter, entry in self._kept:
            last_row = letter.row
            yield restamped(letter), entry, Decision.SEND
        if self._kept_all:
            return
        later = (letter for letter in self.campaign.letters() if letter.row > last_row)
        yield from map(self._decide, later)


@dataclass
class RunResult:
    """How a run ended."""

    summary: SendSummary
    interrupted: bool = False


def send_letters(
    sender: Sender,
    letters: Iterator[Letter],
    *,
    on_outcome: Callable[[Letter, Outcome], None] | None = None,
    on_interrupt: Callable[[int], None] | None = None,
) -> RunResult:
    """Run the sender; the first Ctrl-C (or SIGTERM) stops taking letters, the second aborts.

    What is alive when sending starts (modules, the plan's letters) is left out of garbage
    collection during the run: collecting it took up to 50 ms at a time, long enough to push
    letters past their rate-limit slots.
    """
    gc.freeze()
    try:
        return asyncio.run(_send(sender, letters, on_outcome, on_interrupt))
    finally:
        gc.unfreeze()


async def _send(
    sender: Sender,
    letters: Iterator[Letter],
    on_outcome: Callable[[Letter, Outcome], None] | None,
    on_interrupt: Callable[[int], None] | None,
) -> RunResult:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    stop = asyncio.Event()
    presses = 0

    def interrupted() -> None:
        nonlocal presses
        presses += 1
        if on_interrupt is not None:
            on_interrupt(presses)
        if presses == 1:
            stop.set()
        elif task is not None:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted)
    try:
        summary = await sender.send(letters, on_outcome=on_outcome, stop=stop)
    except asyncio.CancelledError:
        return RunResult(SendSummary(stopped_reason="aborted"), interrupted=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return RunResult(summary, interrupted=presses > 0)
