"""Tests for threadloom._clock: the real clock and the manual clock tests drive."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from threadloom.scheduling.clock import Clock, ManualClock, SystemClock

UTC = timezone.utc
START = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
WAIT = 10.0  # real seconds a test waits at most for another thread


def _sleep_in_thread(
    clock: Clock, deadline: datetime | None, wake: threading.Event
) -> threading.Thread:
    thread = threading.Thread(target=clock.sleep_until, args=(deadline, wake), daemon=True)
    thread.start()
    return thread


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(ManualClock(), Clock)


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(START)
    assert clock.now() == START
    assert clock.now() == START
    assert clock.advance(90) == START + timedelta(seconds=90)
    assert clock.now() == START + timedelta(seconds=90)
    assert clock.monotonic() == 90.0


def test_manual_clock_set_converts_to_utc_and_keeps_monotonic_monotonic() -> None:
    clock = ManualClock(START)
    paris = timezone(timedelta(hours=2))
    clock.set(datetime(2024, 6, 1, 15, 0, tzinfo=paris))  # 13:00 UTC
    assert clock.now() == datetime(2024, 6, 1, 13, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC
    assert clock.monotonic() == 3600.0
    clock.set(START - timedelta(hours=5))  # a backward step, as NTP may do
    assert clock.now() == START - timedelta(hours=5)
    assert clock.monotonic() == 3600.0


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_manual_clock_rejects_bad_advances(bad: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        ManualClock(START).advance(bad)


def test_manual_clock_rejects_naive_and_non_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        ManualClock(datetime(2024, 1, 1))
    with pytest.raises(TypeError, match="datetime"):
        ManualClock(START).set("2024-01-01")  # type: ignore[arg-type]


def test_manual_sleep_returns_at_once_when_the_deadline_has_passed() -> None:
    clock = ManualClock(START)
    wake = threading.Event()
    thread = _sleep_in_thread(clock, START, wake)
    thread.join(WAIT)
    assert not thread.is_alive()


def test_manual_sleeper_wakes_when_time_reaches_its_deadline_and_not_before() -> None:
    clock = ManualClock(START)
    wake = threading.Event()
    thread = _sleep_in_thread(clock, START + timedelta(seconds=60), wake)
    assert clock.wait_for_sleepers(timeout=WAIT)
    clock.advance(59)
    # Still asleep: the only sleeper is idle with its deadline in the future.
    assert clock.wait_for_sleepers(timeout=WAIT)
    assert thread.is_alive()
    assert not wake.is_set()
    clock.advance(1)
    thread.join(WAIT)
    assert not thread.is_alive()
    assert wake.is_set()  # the clock wakes sleepers through their own event


def test_manual_sleeper_without_deadline_wakes_only_on_its_event() -> None:
    clock = ManualClock(START)
    wake = threading.Event()
    thread = _sleep_in_thread(clock, None, wake)
    assert clock.wait_for_sleepers(timeout=WAIT)
    clock.advance(10**6)
    assert clock.wait_for_sleepers(timeout=WAIT)
    assert thread.is_alive()
    wake.set()
    thread.join(WAIT)
    assert not thread.is_alive()


def test_wait_for_sleepers_times_out_when_nobody_sleeps() -> None:
    assert ManualClock(START).wait_for_sleepers(timeout=0.05) is False


def test_wait_for_sleepers_ignores_a_sleeper_whose_wake_is_pending() -> None:
    clock = ManualClock(START)
    wake = threading.Event()
    wake.set()
    # Registered but about to return: not "idle".
    with clock._cond:
        clock._sleepers[object()] = (wake, None)
    assert clock.wait_for_sleepers(timeout=0.05) is False


def test_system_clock_reads_aware_utc() -> None:
    now = SystemClock().now()
    assert now.tzinfo is UTC
    assert abs((now - datetime.now(UTC)).total_seconds()) < 60


def test_system_clock_sleep_returns_when_woken() -> None:
    clock = SystemClock()
    wake = threading.Event()
    thread = _sleep_in_thread(clock, clock.now() + timedelta(days=1), wake)
    wake.set()
    thread.join(WAIT)
    assert not thread.is_alive()


def test_system_clock_sleep_returns_for_a_past_deadline() -> None:
    clock = SystemClock()
    thread = _sleep_in_thread(clock, clock.now() - timedelta(seconds=1), threading.Event())
    thread.join(WAIT)
    assert not thread.is_alive()


def test_system_clock_caps_each_sleep_at_max_sleep() -> None:
    clock = SystemClock(max_sleep=0.01)
    thread = _sleep_in_thread(clock, None, threading.Event())
    thread.join(WAIT)
    assert not thread.is_alive()


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan")])
def test_system_clock_rejects_bad_max_sleep(bad: float) -> None:
    with pytest.raises(ValueError, match="max_sleep"):
        SystemClock(max_sleep=bad)
