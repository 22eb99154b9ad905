"""The one backoff: its schedule, and the retries that wait by it."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from bridge.retry import Backoff


def test_without_jitter_the_schedule_is_exact_doubling_up_to_the_cap():
    backoff = Backoff(0.5, 30.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_jitter_only_shortens_each_delay_by_at_most_its_fraction():
    backoff = Backoff(1.0, 8.0, jitter=0.5)
    for expected in (1.0, 2.0, 4.0, 8.0, 8.0):
        assert expected * 0.5 <= backoff.next_delay() <= expected


def test_a_retry_loop_through_a_long_outage_keeps_the_cap():
    # Past 1,024 attempts 2**attempt no longer fits a float: about 8.5 hours at a 30 s cap.
    backoff = Backoff(0.5, 30.0)
    delays = [backoff.next_delay() for _ in range(3000)]
    assert backoff.attempts == 3000
    assert 24.0 <= delays[-1] <= 30.0


@pytest.mark.parametrize("jitter", [-0.1, 1.0])
def test_a_jitter_that_could_make_a_delay_negative_or_zero_is_refused(jitter):
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=jitter)


class _Source:
    """A subscriptions file that has changed and stays changed until applied."""

    def __init__(self) -> None:
        self.applied: list[object] = []

    def read_if_changed(self):
        return None if self.applied else SimpleNamespace(subscriptions=[])

    def apply(self, pending) -> None:
        self.applied.append(pending)


def test_a_subscriptions_reload_is_retried_on_the_registry_schedule(monkeypatch, caplog):
    from streams import worker_timers

    now = [1000.0]
    monkeypatch.setattr(worker_timers.time, "monotonic", lambda: now[0])
    failures = [4]

    def prepare_sinks(_settings, _subscriptions, _registrar):
        if failures[0]:
            failures[0] -= 1
            raise TimeoutError()

    monkeypatch.setattr("streams.app.prepare_sinks", prepare_sinks)
    source = _Source()
    health = SimpleNamespace(problem=None)
    reload = worker_timers.subscription_reloader(SimpleNamespace(), source, health, None)  # type: ignore[arg-type]

    waits: list[float] = []
    with caplog.at_level(logging.ERROR, logger="streams.worker_timers"):
        for _ in range(10):
            asyncio.run(reload())
            if source.applied:
                break
            assert health.problem == "new subscriptions not in force: no answer in time"
            waits.append(caplog.records[-1].args[0])
            tried = len(caplog.records)
            now[0] += waits[-1] - 0.01
            asyncio.run(reload())  # a tick before the wait is over: nothing is tried
            assert len(caplog.records) == tried
            now[0] += 0.01
    assert waits == [0.5, 1.0, 2.0, 4.0]
    assert health.problem is None and len(source.applied) == 1
