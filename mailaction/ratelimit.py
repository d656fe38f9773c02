"""Rate limits that never burst: each letter gets its own time slot, one interval after the last.

No library: aiolimiter's leaky bucket lets a full period's worth of letters go at once after a
pause, which is exactly the burst a mail provider's limit punishes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from .config import Rate

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# A waiter that wakes later than this after its slot (or later than one interval, if shorter)
# gives the slot up and takes the next free one: the slots after it are kept, so going anyway
# would crowd letters together after an event-loop stall. 5 ms is a third of the 1.5 % margin
# the sender leaves in every second; the rest covers the way from slot to server.
LATE = 0.005


class Limiter(Protocol):
    """What the sender waits on before each letter."""

    async def acquire(self, domains: Iterable[str]) -> None: ...


class RateLimiter:
    """Spaces acquisitions so that no window of any length sees more than the rate allows."""

    def __init__(
        self, rate: Rate, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        self.interval = rate.seconds / rate.count
        self.next_slot = -math.inf  # the earliest time the next acquisition may be granted
        self._clock = clock
        self._sleep = sleep

    async def acquire(self) -> None:
        """Wait for the next free slot."""
        await _take_slot([self], self._clock, self._sleep)


class CampaignLimiter:
    """A global rate and an optional rate per recipient domain."""

    def __init__(
        self,
        rate: Rate | None,
        per_domain_rate: Rate | None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._global = [RateLimiter(rate, clock=clock, sleep=sleep)] if rate else []
        self._per_domain_rate = per_domain_rate
        self._domains: dict[str, RateLimiter] = {}

    def _domain(self, domain: str) -> RateLimiter:
        assert self._per_domain_rate is not None
        limiter = self._domains.get(domain)
        if limiter is None:
            limiter = RateLimiter(self._per_domain_rate, clock=self._clock, sleep=self._sleep)
            self._domains[domain] = limiter
        return limiter

    async def acquire(self, domains: Iterable[str]) -> None:
        """Wait until a letter to ``domains`` may go under every applicable rate."""
        if self._per_domain_rate is None:
            limiters = []
        else:
            limiters = [self._domain(d) for d in sorted({d.lower() for d in domains})]
        # Holding a global slot while a busy domain makes us wait would leave it unused.
        await _until_free(limiters, self._clock, self._sleep)
        await _take_slot(limiters + self._global, self._clock, self._sleep)


async def _until_free(limiters: list[RateLimiter], clock: Clock, sleep: Sleep) -> None:
    """Wait until every limiter could grant a slot now."""
    while limiters:
        delay = max(limiter.next_slot for limiter in limiters) - clock()
        if delay <= 0:
            return
        await sleep(delay)


async def _take_slot(limiters: list[RateLimiter], clock: Clock, sleep: Sleep) -> None:
    """Reserve the first slot free in every limiter, then wait for it; again if woken too late.

    One slot shared by all limiters means the wait ends at a time each of them granted; waiting
    for them one after another would let a late global slot bunch up a domain's letters.
    """
    if not limiters:
        return
    late = min(LATE, *(limiter.interval for limiter in limiters))
    while True:
        now = clock()
        slot = max(now, *(limiter.next_slot for limiter in limiters))
        for limiter in limiters:
            limiter.next_slot = slot + limiter.interval
        if slot <= now:
            return
        await sleep(slot - now)
        if clock() - slot <= late:
            return
