"""Rate limits shared by every worker of a campaign, kept in its delivery log.

Each rate (the global one, and one per recipient domain) is one row of the log's `limits`
table holding its next free moment on the database's clock. A worker takes a slot in one short
transaction (SQLite: under the write lock; PostgreSQL: the rows locked ``FOR UPDATE`` in name
order), moves the row one interval on, and sleeps until its slot: the letters of all workers,
on one machine or several, are spaced as one sender's would be. The cost is one transaction per
letter (a few round trips to PostgreSQL), only paid when a rate is set.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from .config import Rate
from .deliverylog import DeliveryLog
from .ratelimit import LATE
from .sender import RATE_MARGIN


class SharedLimiter:
    """A global rate and an optional rate per recipient domain, held in the delivery log."""

    def __init__(self, log: DeliveryLog, rate: Rate | None, per_domain_rate: Rate | None) -> None:
        self._log = log
        self._global = [("", _interval(rate))] if rate else []
        self._per_domain = _interval(per_domain_rate) if per_domain_rate else None

    async def acquire(self, domains: Iterable[str]) -> None:
        """Wait until a letter to ``domains`` may go under every shared rate."""
        limits = list(self._global)
        if self._per_domain is not None:
            limits += [(f"@{domain}", self._per_domain) for domain in {d.lower() for d in domains}]
        limits.sort()
        if not limits:
            return
        late = min(LATE, *(interval for _, interval in limits))
        while True:
            wait = self._log.take_slot(limits)
            if wait <= 0:
                return
            due = time.monotonic() + wait
            await asyncio.sleep(wait)
            # Woken too late, going anyway would crowd letters into the next slots: take a new one.
            if time.monotonic() - due <= late:
                return


def _interval(rate: Rate) -> float:
    """Seconds between two letters, with the sender's safety margin."""
    return rate.seconds * RATE_MARGIN / rate.count
