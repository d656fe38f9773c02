"""What a server's refusals teach a run (AIMD), on a clock the test moves."""

from __future__ import annotations

import asyncio

import pytest

from mailaction.ratelimit import (
    CONNECT_BACKOFF,
    PROBE_AFTER,
    SLOW_DOWN_WINDOW,
    CampaignLimiter,
    ServerLimits,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_refused_connection_halves_the_connections_but_keeps_those_working() -> None:
    clock = Clock()
    limits = ServerLimits(8, clock=clock)
    limits.connection_refused(working=3)
    assert limits.connections == 4 and limits.refused_connections == 1
    assert limits.connect_after == clock.now + CONNECT_BACKOFF[0]
    limits.connection_refused(working=0)  # the same wave: no second decrease, the same wait
    assert limits.connections == 4
    assert limits.connect_after == clock.now + CONNECT_BACKOFF[0]
    clock.now = limits.connect_after
    limits.connection_refused(working=3)
    assert limits.connections == 3  # halving would leave 2, but 3 are working
    clock.now = limits.connect_after
    limits.connection_refused(working=0)
    limits.connection_refused(working=0)
    assert limits.connections == 1  # never below one


def test_the_wait_doubles_once_per_wave_of_refusals_to_a_ceiling_and_a_connection_resets_it() -> None:
    clock = Clock()
    limits = ServerLimits(8, clock=clock)
    waits = []
    for _ in range(9):  # each wave: the seven connections beyond the first refused at once
        for _ in range(7):
            limits.connection_refused(working=0)
        waits.append(limits.connect_after - clock.now)
        clock.now = limits.connect_after
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert limits.refused_connections == 63
    limits.connected()
    limits.connection_refused(working=0)
    assert limits.connect_after - clock.now == CONNECT_BACKOFF[0]


def test_quiet_letters_add_one_connection_per_probe_up_to_the_configured_number() -> None:
    clock = Clock()
    limits = ServerLimits(3, clock=clock)
    limits.connection_refused(working=0)
    assert limits.connections == 1
    start = clock.now
    clock.now = start + PROBE_AFTER - 0.001
    limits.accepted()
    assert limits.connections == 1
    for probe in range(1, 5):
        clock.now = start + probe * PROBE_AFTER
        limits.accepted()
        assert limits.connections == min(3, 1 + probe)


def test_a_slow_down_sets_the_rate_the_server_accepted_and_pauses_for_its_window() -> None:
    clock = Clock()
    limits = ServerLimits(4, clock=clock)
    start = clock.now
    for second in range(10):
        clock.now = start + second
        limits.accepted()
    clock.now = start + 10
    limits.slow_down()
    assert limits.connections == 2 and limits.slow_downs == 1
    assert limits.limiter is not None
    assert limits.limiter.interval == pytest.approx(SLOW_DOWN_WINDOW / 10)
    assert limits.limiter.next_slot == start + SLOW_DOWN_WINDOW  # one window after the first
    limits.slow_down()  # a letter already on its way: counted, nothing more
    assert limits.connections == 2 and limits.slow_downs == 2
    clock.now = start + 10 + PROBE_AFTER
    limits.accepted()
    assert limits.connections == 3
    assert limits.limiter.interval == pytest.approx(SLOW_DOWN_WINDOW / 10 / 1.1)


def test_letters_accepted_a_whole_window_ago_are_forgotten() -> None:
    clock = Clock()
    limits = ServerLimits(4, window=10.0, probe_after=5.0, clock=clock)
    start = clock.now
    limits.accepted()
    clock.now = start + 5
    limits.accepted()
    clock.now = start + 10  # the first letter is exactly one window old
    limits.slow_down()
    assert limits.limiter is not None
    assert limits.limiter.interval == pytest.approx(10.0)  # one letter counted, in 10 s
    clock.now = start + 15
    limits.accepted()
    assert limits.connections == 3  # probed after 5 s, as configured


def test_a_refused_connection_keeps_one_when_none_is_working() -> None:
    limits = ServerLimits(1, clock=Clock())
    limits.connection_refused(working=0)
    assert limits.connections == 1


def test_a_slow_down_with_no_letter_accepted_pauses_one_window_from_now() -> None:
    clock = Clock()
    limits = ServerLimits(4, clock=clock)
    limits.slow_down()
    assert limits.limiter is not None
    assert limits.limiter.interval == pytest.approx(SLOW_DOWN_WINDOW)  # one letter a window
    assert limits.limiter.next_slot == clock.now + SLOW_DOWN_WINDOW
    assert limits.connections == 2


def test_a_slow_down_never_keeps_more_connections_than_half() -> None:
    limits = ServerLimits(2, clock=Clock())
    limits.slow_down()
    assert limits.connections == 1


async def test_a_slow_down_right_after_the_pause_slows_down_again() -> None:
    # 10 letters in 10 s, then a refusal: 6 s apart, paused one window from the first letter.
    # The pause over, a letter takes its slot and is refused too: 9 letters are still within
    # the window, so 60/9 s apart; the connections halve again; the pause runs from that slot.
    clock = Clock()
    limits = ServerLimits(4, clock=clock)
    start = clock.now
    for second in range(10):
        clock.now = start + second
        limits.accepted()
    clock.now = start + 10
    limits.slow_down()
    assert limits.limiter is not None and limits.connections == 2
    assert limits.limiter.interval == pytest.approx(SLOW_DOWN_WINDOW / 10)

    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"a slot free now made the letter wait {seconds} s")

    clock.now = start + SLOW_DOWN_WINDOW  # the pause ends exactly now
    await CampaignLimiter(None, None, clock=clock, sleep=no_sleep, server=limits).acquire([])
    limits.slow_down()
    assert limits.slow_downs == 2 and limits.connections == 1
    assert limits.limiter.interval == pytest.approx(SLOW_DOWN_WINDOW / 9)
    assert limits.limiter.next_slot == pytest.approx(clock.now + SLOW_DOWN_WINDOW / 10)


async def test_the_learnt_rate_runs_on_the_clock_of_the_limits() -> None:
    clock = Clock(1e9)  # far from time.monotonic()
    limits = ServerLimits(4, clock=clock)
    limits.accepted()
    limits.slow_down()
    assert limits.limiter is not None
    clock.now = limits.limiter.next_slot
    async with asyncio.timeout(5):
        await limits.limiter.acquire()  # its slot is now, on this clock: no wait
    assert limits.limiter.next_slot == clock.now + limits.limiter.interval
