"""Rate limiters: no window of any length sees more letters than the rate allows."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import selectors
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailaction.config import Rate
from mailaction.ratelimit import CampaignLimiter, RateLimiter, ServerLimits
from mailaction.sender import RATE_MARGIN

# Grant times are sums of floats; a window may lose an ulp at its edge.
EPSILON = 1e-9


class _VirtualSelector(selectors.DefaultSelector):
    """Instead of blocking until the next timer, jumps the loop's clock to it."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self.loop = loop

    def select(self, timeout: float | None = None) -> list:
        assert timeout is not None, "every task is waiting on something that never comes"
        self.loop.now += timeout
        return super().select(0)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock advances only when every task sleeps: the fake clock."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self.now


def run_virtual(main: Callable[[VirtualTimeLoop], Awaitable[None]]) -> None:
    """Run ``main(loop)`` on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(main(loop))
    finally:
        loop.close()


def most_in_window(grants: list[float], width: float) -> int:
    """The largest number of grants in any half-open window [t, t + width)."""
    grants = sorted(grants)
    return max(
        (bisect.bisect_left(grants, start + width - EPSILON) - i for i, start in enumerate(grants)),
        default=0,
    )


def allowed(rate: Rate, width: float) -> int:
    return math.ceil(width * rate.per_second - EPSILON)


rates = st.builds(Rate, st.sampled_from([1, 2, 7, 50, 600]), st.sampled_from([1, 60, 3600]))
# Each acquirer: the pauses (in intervals) it takes before each of its acquisitions.
arrival_patterns = st.lists(
    st.lists(st.one_of(st.just(0.0), st.floats(0, 3), st.floats(3, 40)), min_size=1, max_size=25),
    min_size=1,
    max_size=8,
)


async def grant_times(loop: VirtualTimeLoop, acquire, interval: float, pauses: list[list[float]]):
    """Run one task per pause list, each pausing then acquiring; return the grant times."""
    grants: list[float] = []

    async def acquirer(own_pauses: list[float]) -> None:
        for pause in own_pauses:
            await asyncio.sleep(pause * interval)
            await acquire()
            grants.append(loop.time())

    await asyncio.gather(*map(acquirer, pauses))
    return grants


@settings(max_examples=60, deadline=None)
@given(rate=rates, pauses=arrival_patterns, k=st.integers(1, 10))
def test_no_window_sees_more_than_the_rate(rate: Rate, pauses: list[list[float]], k: int) -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        limiter = RateLimiter(rate, clock=loop.time)
        grants = await grant_times(loop, limiter.acquire, limiter.interval, pauses)
        assert len(grants) == sum(map(len, pauses))
        for width in (1.0, limiter.interval * k, rate.seconds):
            assert most_in_window(grants, width) <= allowed(rate, width), width

    run_virtual(main)


@given(rate=rates, concurrency=st.integers(1, 6))
@settings(max_examples=20, deadline=None)
def test_long_run_reaches_the_configured_rate(rate: Rate, concurrency: int) -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        limiter = RateLimiter(rate, clock=loop.time)
        grants = await grant_times(
            loop, limiter.acquire, limiter.interval, [[0.0] * 200] * concurrency
        )
        achieved = (len(grants) - 1) / (max(grants) - min(grants))
        assert achieved >= 0.99 * rate.per_second

    run_virtual(main)


def test_first_acquisition_does_not_wait() -> None:
    async def refuse(delay: float) -> None:
        raise AssertionError(f"slept {delay}")

    async def main(loop: VirtualTimeLoop) -> None:
        await RateLimiter(Rate(1, 60), clock=loop.time, sleep=refuse).acquire()

    run_virtual(main)


def test_after_a_pause_no_burst() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        limiter = RateLimiter(Rate(10, 1), clock=loop.time)
        await limiter.acquire()
        await asyncio.sleep(60)
        grants = await grant_times(loop, limiter.acquire, limiter.interval, [[0.0]] * 5)
        assert sorted(grants) == pytest.approx([60.0, 60.1, 60.2, 60.3, 60.4])

    run_virtual(main)


def stalling_sleep(
    loop: VirtualTimeLoop, every: float, stall: float
) -> Callable[[float], Awaitable[None]]:
    """A sleep on a loop that stalls for ``stall`` seconds every ``every``: wakes then come late."""

    async def sleep(delay: float) -> None:
        wake = loop.time() + delay
        into_stall = wake % every
        if into_stall < stall:
            wake += stall - into_stall
        await asyncio.sleep(wake - loop.time())

    return sleep


@pytest.mark.parametrize("per_second", [200, 50])
@pytest.mark.parametrize("stall", [0.003, 0.012, 0.05, 0.3])
def test_waiters_woken_late_do_not_bunch(per_second: int, stall: float) -> None:
    rate = Rate(per_second, 1)

    async def main(loop: VirtualTimeLoop) -> None:
        # As the sender does: slots spaced for a rate a little below the configured one.
        limiter = RateLimiter(
            Rate(rate.count, RATE_MARGIN), clock=loop.time, sleep=stalling_sleep(loop, 0.237, stall)
        )
        grants = await grant_times(loop, limiter.acquire, limiter.interval, [[0.0] * 300] * 8)
        assert len(grants) == 2400
        assert most_in_window(grants, 1.0) <= per_second
        # The margin is a share of any window: in a short one a letter a little late may be one over.
        assert most_in_window(grants, 0.1) <= allowed(rate, 0.1) + 1

    run_virtual(main)


async def domain_grants(loop: VirtualTimeLoop, limiter: CampaignLimiter, letters: list[list[str]]):
    """Send each letter (its recipient domains) from its own task; grant times per domain."""
    per_domain: dict[str, list[float]] = defaultdict(list)
    everything: list[float] = []

    async def send(domains: list[str]) -> None:
        await limiter.acquire(domains)
        everything.append(loop.time())
        for domain in {d.lower() for d in domains}:
            per_domain[domain].append(loop.time())

    await asyncio.gather(*map(send, letters))
    return per_domain, everything


def test_domains_are_limited_independently() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        limiter = CampaignLimiter(None, Rate(1, 1), clock=loop.time)
        letters = [["a.example.org"], ["b.example.org"]] * 10
        per_domain, everything = await domain_grants(loop, limiter, letters)
        assert (
            per_domain["a.example.org"]
            == per_domain["b.example.org"]
            == [float(s) for s in range(10)]
        )
        assert max(everything) == 9.0

    run_virtual(main)


def test_domain_names_ignore_case_and_each_domain_of_a_letter_counts() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        limiter = CampaignLimiter(None, Rate(1, 1), clock=loop.time)
        grants = []
        for domains in (
            ["Example.ORG"],
            ["example.org", "example.net", "EXAMPLE.org"],
            ["example.net"],
        ):
            await limiter.acquire(domains)
            grants.append(loop.time())
        assert grants == [0.0, 1.0, 2.0]

    run_virtual(main)


domain_names = st.sampled_from(["example.org", "example.com", "example.net", "mail.test"])


@settings(max_examples=60, deadline=None)
@given(
    global_rate=rates,
    domain_rate=rates,
    letters=st.lists(st.lists(domain_names, min_size=1, max_size=3), min_size=1, max_size=40),
)
def test_domain_and_global_rates_hold_together(
    global_rate: Rate, domain_rate: Rate, letters: list[list[str]]
) -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        limiter = CampaignLimiter(global_rate, domain_rate, clock=loop.time)
        per_domain, everything = await domain_grants(loop, limiter, letters)
        assert len(everything) == len(letters)
        for width in (1.0, global_rate.seconds / global_rate.count * 3):
            assert most_in_window(everything, width) <= allowed(global_rate, width)
        for grants in per_domain.values():
            for width in (1.0, domain_rate.seconds / domain_rate.count * 2):
                assert most_in_window(grants, width) <= allowed(domain_rate, width)

    run_virtual(main)


def test_a_busy_domain_does_not_hold_up_the_others() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        limiter = CampaignLimiter(Rate(10, 1), Rate(1, 1), clock=loop.time)
        letters = [["slow.example.org"]] * 5 + [[f"d{i}.example.org"] for i in range(10)]
        per_domain, _ = await domain_grants(loop, limiter, letters)
        slow = per_domain.pop("slow.example.org")
        assert all(later - earlier >= 1.0 - EPSILON for earlier, later in itertools.pairwise(slow))
        # The slow domain's waiting letters hold no global slot: the ten others take the first ten.
        assert max(max(grants) for grants in per_domain.values()) == pytest.approx(1.0)

    run_virtual(main)


async def test_no_rates_means_no_waiting() -> None:
    async def refuse(delay: float) -> None:
        raise AssertionError(f"slept {delay}")

    limiter = CampaignLimiter(None, None, sleep=refuse)
    for _ in range(1000):
        await limiter.acquire(["example.org"])


async def test_real_clock_twenty_per_second() -> None:
    limiter = RateLimiter(Rate(20, 1))
    start = time.monotonic()
    grants: list[float] = []
    while time.monotonic() - start < 1.2:
        await limiter.acquire()
        grants.append(time.monotonic())
    # Every slot of the first second is granted, but for those a busy machine woke too late
    # for (`LATE`): the limiter gives such a slot up and the gap before the next grant shows it.
    first_second = [g for g in grants if g < start + 1.0]
    gaps = [later - earlier for earlier, later in itertools.pairwise(first_second)]
    given_up = sum(max(0, round(gap / limiter.interval) - 1) for gap in gaps)
    assert len(first_second) + given_up >= 19
    # A timer may fire a little late and the next one on time; that jitter is the event loop's.
    assert most_in_window(grants, 1.0 - 0.01) <= 20


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_refused_connections_halve_once_per_wave_and_never_below_those_working() -> None:
    clock = FakeClock()
    limits = ServerLimits(8, clock=clock)
    for _ in range(6):  # six refusals at once: one decrease
        limits.connection_refused(working=2)
    assert limits.connections == 4
    assert limits.connect_after > clock.now
    clock.now = limits.connect_after
    limits.connection_refused(working=2)
    assert limits.connections == 2
    clock.now = limits.connect_after
    limits.connection_refused(working=2)
    assert limits.connections == 2  # the two working connections prove the server takes two
    assert limits.refused_connections == 8


def test_the_wait_after_a_refused_connection_doubles_and_starts_again_after_a_success() -> None:
    clock = FakeClock()
    limits = ServerLimits(2, clock=clock)
    waits = []
    for _ in range(8):
        limits.connection_refused(working=0)
        waits.append(limits.connect_after - clock.now)
        clock.now = limits.connect_after
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    limits.connected()
    limits.connection_refused(working=0)
    assert limits.connect_after - clock.now == 1.0


def test_connections_grow_back_one_at_a_time_when_quiet() -> None:
    clock = FakeClock()
    limits = ServerLimits(4, probe_after=15.0, clock=clock)
    limits.connection_refused(working=1)
    assert limits.connections == 2
    clock.now += 10
    limits.accepted()
    assert limits.connections == 2
    clock.now += 5
    limits.accepted()
    assert limits.connections == 3
    limits.accepted()
    assert limits.connections == 3
    clock.now += 15
    limits.accepted()
    clock.now += 15
    limits.accepted()
    assert limits.connections == 4  # never more than configured


def test_a_slow_down_sets_the_pace_the_server_accepted_and_pauses_for_its_window() -> None:
    clock = FakeClock()
    limits = ServerLimits(4, window=60.0, probe_after=1000.0, clock=clock)
    for _ in range(100):  # 100 letters accepted within a second, then "slow down"
        limits.accepted()
        clock.now += 0.01
    limits.slow_down()
    assert limits.limiter is not None
    assert limits.limiter.interval == pytest.approx(60.0 / 100)
    assert limits.limiter.next_slot == pytest.approx(100.0 + 60.0)  # the window's end
    assert limits.connections == 2
    limits.slow_down()  # a letter already on its way when the first came: no second decrease
    assert limits.connections == 2
    assert limits.slow_downs == 2


def test_the_learnt_pace_rises_a_tenth_after_a_quiet_probe_interval() -> None:
    clock = FakeClock()
    limits = ServerLimits(1, window=10.0, probe_after=15.0, clock=clock)
    limits.accepted()
    limits.slow_down()
    assert limits.limiter is not None
    interval = limits.limiter.interval
    clock.now += 15
    limits.accepted()
    assert limits.limiter.interval == pytest.approx(interval / 1.1)


async def test_the_campaign_limiter_follows_the_servers_pace() -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)
        clock.now += delay

    limits = ServerLimits(1, window=1.0, clock=clock)
    limiter = CampaignLimiter(None, None, clock=clock, sleep=sleep, server=limits)
    assert limiter.delay(["example.org"]) == 0
    for _ in range(4):
        limits.accepted()
    limits.slow_down()  # 4 a second, after a pause to the end of the window
    assert limiter.delay(["example.org"]) == pytest.approx(1.0)
    for _ in range(3):
        await limiter.acquire(["example.org"])
    assert slept == pytest.approx([1.0, 0.25, 0.25])


async def test_the_shared_rates_are_asked_for_the_letters_domains() -> None:
    asked: list[list[str]] = []

    class Shared:
        async def acquire(self, domains: Iterable[str]) -> None:
            asked.append(list(domains))

    limiter = CampaignLimiter(None, None, shared=Shared())
    await limiter.acquire(("example.org", "Example.net"))
    assert asked == [["example.org", "Example.net"]]


async def test_a_domains_delay_is_that_of_the_limiter_its_letters_wait_for() -> None:
    # The sender's queues ask `domain_delay` of a letter's key before taking it: the answer must
    # come from the limiter `acquire` waits on, whatever the case of the addresses.
    clock = FakeClock()

    async def sleep(delay: float) -> None:
        clock.now += delay

    limiter = CampaignLimiter(None, Rate(1, 1.0), clock=clock, sleep=sleep)
    await limiter.acquire(["Example.org"])
    assert limiter.domain_delay(limiter.domain_key(["EXAMPLE.org"])) == pytest.approx(1.0)
    assert limiter.domain_delay(limiter.domain_key(["example.net"])) == 0
