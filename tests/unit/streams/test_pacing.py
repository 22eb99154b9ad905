"""streams.pacing: the fetch waits longest when quiet, and not at all at the busy rate."""

from __future__ import annotations

import pytest

from streams.pacing import FetchPause


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _fed(rate: float, seconds: float = 2.0, longest: float = 0.03, busy: float = 1000.0) -> FetchPause:
    """A pause fed `rate` notifications a second in batches of ten, for `seconds`."""
    clock = Clock()
    pause = FetchPause(longest, busy, clock=clock)
    batches = int(rate * seconds / 10)
    for _ in range(batches):
        clock.now += 10 / rate
        pause.handled(10)
    return pause


def test_a_quiet_or_idle_worker_waits_the_longest():
    assert FetchPause(0.03, 1000.0)() == pytest.approx(0.03)
    assert _fed(10)() == pytest.approx(0.03 * 0.99, rel=0.02)


def test_the_pause_shrinks_linearly_with_the_rate_and_is_gone_at_the_busy_rate():
    assert _fed(100)() == pytest.approx(0.027, rel=0.05)
    assert _fed(500)() == pytest.approx(0.015, rel=0.05)
    assert _fed(1000)() == 0.0
    assert _fed(5000)() == 0.0


def test_the_rate_reads_the_last_span_only():
    clock = Clock()
    pause = FetchPause(0.03, 1000.0, clock=clock)
    for _ in range(100):
        clock.now += 0.01
        pause.handled(10)
    assert pause.rate() == pytest.approx(1000.0, rel=0.02)
    # A quiet second later the burst is forgotten: the next record waits for company again.
    clock.now += 1.5
    assert pause.rate() == 0.0
    assert pause() == pytest.approx(0.03)


def test_no_wait_configured_is_no_wait_at_any_rate():
    assert FetchPause(0.0, 1000.0)() == 0.0
