"""One campaign sent through several accounts ([[smtp]] given more than once).

Each account gets its own `Sender` (its server, login, ``rate``, ``concurrency``), all in one
event loop and all taking letters from one iterator over the queue, so a letter goes out once,
through whichever account takes it. An account takes at most what its ``daily_limit`` leaves
for the last 24 hours (counted per account in the delivery log's ``account`` column). An
account that cannot log in, or stops (too many failures), leaves the queue to the others; its
`AccountResult` says why.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from .accounts import account_secret, password_required
from .config import Config, SendingConfig, SMTPConfig
from .deliverylog import DeliveryLog, Outcome, State
from .errors import SMTPSetupError
from .message import Letter
from .sender import OnOutcome, Sender, SendSummary, check_server

__all__ = ["DAY", "AccountPool", "AccountResult", "account_sending", "daily_room"]

DAY = 86_400.0


@dataclass
class AccountResult:
    """How one account did in a run."""

    account: str  # its label (`SMTPConfig.label`)
    daily_limit: int | None  # None: no daily limit
    room: int | None  # letters it could still send when the run started; None: no limit
    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    taken: int = 0  # letters it took from the queue this run
    stopped: str | None = None  # why it stopped before the queue was empty
    at_limit: bool = False  # it stopped because its daily limit was reached

    def reached_limit(self) -> None:
        self.stopped = f"its daily limit of {self.daily_limit} was reached"
        self.at_limit = True

    def describe(self) -> str:
        """One line for people."""
        line = f"{self.account}: {self.sent} sent"
        if self.failed:
            line += f", {self.failed} failed"
        if self.uncertain:
            line += f", {self.uncertain} uncertain"
        return f"{line}; stopped: {self.stopped}" if self.stopped else line


def account_sending(sending: SendingConfig, account: SMTPConfig) -> SendingConfig:
    """[sending] with the account's own rate, daily limit and concurrency where it sets them."""
    return replace(
        sending,
        rate=account.rate or sending.rate,
        daily_limit=account.daily_limit or sending.daily_limit,
        concurrency=account.concurrency or sending.concurrency,
    )


def _room(config: Config, account: SMTPConfig, log: DeliveryLog, now: float) -> int | None:
    daily = account_sending(config.sending, account).daily_limit
    if daily is None:
        return None
    return max(daily - log.sent_since(now - DAY, account=account.label), 0)


def daily_room(config: Config, log: DeliveryLog, now: float) -> int | None:
    """How many letters the accounts may still send together today; None when any has no limit."""
    rooms = [_room(config, account, log, now) for account in config.sending_accounts]
    return None if None in rooms else sum(room or 0 for room in rooms)


class AccountPool:
    """The campaign's accounts, sending one queue together; `send` works as `Sender.send`."""

    def __init__(self, config: Config, log: DeliveryLog, *, now: float) -> None:
        self.config = config
        self.log = log
        self.accounts = config.sending_accounts
        self.results = [
            AccountResult(
                account.label,
                account_sending(config.sending, account).daily_limit,
                _room(config, account, log, now),
            )
            for account in self.accounts
        ]
        self._senders: dict[str, Sender] = {}

    def check(self) -> None:
        """Connect to every account and log in; an account that cannot is left out, with why.

        Raises SMTPSetupError when no account can send.
        """
        secrets = {
            account.label: account_secret(account, functools.partial(password_required, account))
            for account in self.accounts
        }

        async def check_all() -> list[BaseException | object]:
            return await asyncio.gather(
                *(
                    check_server(account, self.config.sending, secrets[account.label])
                    for account in self.accounts
                ),
                return_exceptions=True,
            )

        for account, result, checked in zip(
            self.accounts, self.results, asyncio.run(check_all()), strict=True
        ):
            if isinstance(checked, SMTPSetupError):
                result.stopped = str(checked)
            elif isinstance(checked, BaseException):
                raise checked
            elif result.room == 0:
                result.reached_limit()
            else:
                sending = account_sending(self.config.sending, account)
                self._senders[account.label] = Sender(
                    account, sending, self.log, password=secrets[account.label]
                )
        if not self._senders:
            raise SMTPSetupError("; ".join(f"{r.account}: {r.stopped}" for r in self.results))

    async def send(
        self,
        letters: Iterable[Letter],
        *,
        on_outcome: OnOutcome | None = None,
        stop: asyncio.Event | None = None,
    ) -> SendSummary:
        """Send the letters through every account that passed `check`; the tally of them all."""
        shared = iter(letters)
        stop = stop or asyncio.Event()
        runs = [
            self._send_one(self._senders[result.account], result, shared, on_outcome, stop)
            for result in self.results
            if result.account in self._senders and not result.stopped
        ]
        started = time.time()
        if not runs:
            reason = "no account can take more letters in this run"
            return SendSummary(started=started, finished=started, stopped_reason=reason)
        summaries = await asyncio.gather(*runs)
        total = SendSummary(started=started, finished=time.time())
        for summary in summaries:
            total.sent += summary.sent
            total.failed += summary.failed
            total.deferred += summary.deferred
            total.uncertain += summary.uncertain
            total.refused_connections += summary.refused_connections
            total.slow_downs += summary.slow_downs
        stops = [
            f"account {r.account} stopped: {r.stopped}"
            for r in self.results
            if r.stopped and not r.at_limit
        ]
        total.stopped_reason = "; ".join(stops) or None
        return total

    async def _send_one(
        self,
        sender: Sender,
        result: AccountResult,
        shared: Iterator[Letter],
        on_outcome: OnOutcome | None,
        stop: asyncio.Event,
    ) -> SendSummary:
        """One account's run: its letters taken from ``shared``, up to its daily room."""
        taken = _counted(shared, result)
        if result.room is not None:
            taken = itertools.islice(taken, result.room - result.taken)
        tally = _tally(self.log, result, on_outcome)
        try:
            summary = await sender.send(taken, on_outcome=tally, stop=stop)
        except SMTPSetupError as exc:
            result.stopped = str(exc)
            return SendSummary(sent=result.sent, failed=result.failed, uncertain=result.uncertain)
        if summary.stopped_reason:
            result.stopped = summary.stopped_reason
        elif result.room is not None and result.taken >= result.room:
            result.reached_limit()
        return summary


def _counted(letters: Iterator[Letter], result: AccountResult) -> Iterator[Letter]:
    """The letters, counted in ``result.taken`` as the account takes them."""
    for letter in letters:
        result.taken += 1
        yield letter


def _tally(
    log: DeliveryLog, result: AccountResult, on_outcome: OnOutcome | None
) -> Callable[[Letter, Outcome], None]:
    """The outcome callback of one account: notes the account in the log and counts."""

    def noted(letter: Letter, outcome: Outcome) -> None:
        log.note_account(letter.contact_id, result.account)
        if outcome.state is State.SENT:
            result.sent += 1
        elif outcome.state is State.FAILED:
            result.failed += 1
        elif outcome.state is State.UNCERTAIN:
            result.uncertain += 1
        if on_outcome is not None:
            on_outcome(letter, outcome)

    return noted
