"""Rate limits that never burst: each letter gets its own time slot, one interval after the last.

No library: aiolimiter's leaky bucket lets a full period's worth of letters go at once after a
pause, which is exactly the burst a mail provider's limit punishes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
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
        server: ServerLimits | None = None,
        shared: Limiter | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._server = server
        self._shared = shared  # rates shared with other processes, waited for after these
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

    def _limiters(self, domains: Iterable[str]) -> tuple[list[RateLimiter], list[RateLimiter]]:
        """The per-domain limiters and the global ones (the server's learnt pace included)."""
        if self._per_domain_rate is None:
            local = []
        else:
            local = [self._domain(d) for d in sorted({d.lower() for d in domains})]
        server = self._server.limiter if self._server is not None else None
        return local, self._global if server is None else [*self._global, server]

    def domain_key(self, domains: Iterable[str]) -> tuple[str, ...]:
        """The domains whose limits apply to a letter to ``domains`` (none without a per-domain
        rate): letters with the same key wait for the same slots."""
        if self._per_domain_rate is None:
            return ()
        return tuple(sorted({d.lower() for d in domains}))

    def domain_delay(self, key: tuple[str, ...]) -> float:
        """Seconds before every domain of ``key`` has a free slot; 0 when they have now."""
        if not key:
            return 0.0
        now = self._clock()
        return max(0.0, max(self._domain(domain).next_slot for domain in key) - now)

    def delay(self, domains: Iterable[str]) -> float:
        """Seconds before a letter to ``domains`` could go; 0 when it may go now."""
        local, shared = self._limiters(domains)
        if not local and not shared:
            return 0.0
        return max(0.0, max(limiter.next_slot for limiter in local + shared) - self._clock())

    async def acquire(self, domains: Iterable[str]) -> None:
        """Wait until a letter to ``domains`` may go under every applicable rate."""
        local, shared = self._limiters(domains)
        # Holding a global slot while a busy domain makes us wait would leave it unused.
        await _until_free(local, self._clock, self._sleep)
        await _take_slot(local + shared, self._clock, self._sleep)
        if self._shared is not None:
            await self._shared.acquire(domains)


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


# Postfix's anvil counts a client's messages and connections per minute (anvil_rate_time_unit),
# as most servers' limits do: the rate learnt from a "slow down" is counted over this window.
SLOW_DOWN_WINDOW = 60.0
# With no "slow down" for this long, one more connection is tried, and the learnt rate is raised
# by a tenth: each probe that finds the limit again costs one refusal, a handful per minute.
PROBE_AFTER = 15.0
RATE_STEP_UP = 1.1
# A refused connection waits this long before the next is tried, doubling while they keep being
# refused; a success starts again from the first.
CONNECT_BACKOFF = (1.0, 60.0)
DECREASE = 0.5  # multiplicative decrease of the connections


class ServerLimits:
    """What a server's "slow down" replies taught a run: how many connections and how fast.

    Additive increase, multiplicative decrease (AIMD), as TCP does: a connection refused at
    connect halves the connections (never below those working); a refusal of a letter for its
    rate (450/452 4.7.x at MAIL) sets a rate as many letters as the server accepted in the last
    `SLOW_DOWN_WINDOW`, pauses until that window has passed, and halves the connections. Each
    `PROBE_AFTER` seconds without a refusal, one more connection and a tenth more rate.
    """

    def __init__(
        self,
        connections: int,
        *,
        window: float | None = None,
        probe_after: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.max_connections = connections
        self.connections = connections
        self.window = SLOW_DOWN_WINDOW if window is None else window
        self.probe_after = PROBE_AFTER if probe_after is None else probe_after
        # The server's own pace, once learnt; its next_slot also holds every letter in a pause.
        self.limiter: RateLimiter | None = None
        self.connect_after = -math.inf  # no new connection before this time
        self.refused_connections = 0
        self.slow_downs = 0
        self._clock = clock
        self._accepted: deque[float] = deque()
        self._last_change = clock()
        self._connect_backoff = CONNECT_BACKOFF[0]
        self._paused_until = -math.inf

    def accepted(self) -> None:
        """A letter was accepted: count it, and probe for more when it has been quiet long."""
        now = self._clock()
        self._accepted.append(now)
        self._forget(now)
        if now - self._last_change < self.probe_after:
            return
        self._last_change = now
        if self.connections < self.max_connections:
            self.connections += 1
        if self.limiter is not None:
            self.limiter.interval /= RATE_STEP_UP

    def connected(self) -> None:
        """A connection was opened: the next refusal waits the shortest time again."""
        self._connect_backoff = CONNECT_BACKOFF[0]

    def connection_refused(self, working: int) -> None:
        """A connection was refused at connect or greeting while ``working`` others are open."""
        now = self._clock()
        self.refused_connections += 1
        if now < self.connect_after:
            return  # the rest of a wave of refusals: connections tried before the first came back
        # One decrease, and one doubling of the wait, per wave: eight connections tried at once
        # against a server that takes two are one refusal of the run, not six.
        self.connections = max(1, working, int(self.connections * DECREASE))
        self._last_change = now
        self.connect_after = now + self._connect_backoff
        self._connect_backoff = min(self._connect_backoff * 2, CONNECT_BACKOFF[1])

    def slow_down(self) -> None:
        """The server refused a letter for its rate: pause, then go at the rate it accepted."""
        now = self._clock()
        self._forget(now)
        self.slow_downs += 1
        self._last_change = now
        if now < self._paused_until:
            return  # refusals of letters already on their way when the first came
        self.connections = max(1, int(self.connections * DECREASE))
        count = max(1, len(self._accepted))
        first = self._accepted[0] if self._accepted else now
        if self.limiter is None:
            self.limiter = RateLimiter(Rate(count, self.window), clock=self._clock)
        else:
            self.limiter.interval = max(self.limiter.interval, self.window / count)
        # The server's window opened around the first letter it counted; it closes one window on.
        self._paused_until = max(self.limiter.next_slot, first + self.window, now)
        self.limiter.next_slot = self._paused_until

    def _forget(self, now: float) -> None:
        while self._accepted and self._accepted[0] <= now - self.window:
            self._accepted.popleft()
