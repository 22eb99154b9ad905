"""Which end-to-end run stands for a rate in the bench report."""

from __future__ import annotations

from bench.e2e import NOTIFIER, SHIPPED, SHIPPED_REPEAT, SHIPPED_RETRY, best_shipped_runs, target_rate_p99s


def run(rate: int, p99: float, sustained: bool = True, series: str = SHIPPED) -> dict:
    return {"rate": rate, "series": series, "sustained": sustained, "latency": {"ms": {"p99": p99}}}


def test_the_run_of_median_p99_stands_for_a_repeated_rate_not_the_best():
    runs = [run(1000, 140.0), run(1000, 80.0, series=SHIPPED_REPEAT), run(1000, 110.0, series=SHIPPED_REPEAT)]
    assert best_shipped_runs(runs)[1000]["latency"]["ms"]["p99"] == 110.0
    assert target_rate_p99s(runs, 1000) == [140.0, 80.0, 110.0]


def test_of_two_runs_the_higher_p99_stands():
    runs = [run(100, 30.0), run(100, 45.0, series=SHIPPED_REPEAT)]
    assert best_shipped_runs(runs)[100]["latency"]["ms"]["p99"] == 45.0


def test_a_sustained_retry_stands_for_a_rate_whose_first_try_fell_behind():
    runs = [run(2000, 90.0, sustained=False), run(2000, 300.0, series=SHIPPED_RETRY)]
    chosen = best_shipped_runs(runs)[2000]
    assert chosen["sustained"] and chosen["latency"]["ms"]["p99"] == 300.0


def test_of_unsustained_tries_the_lower_p99_stands_and_other_series_are_left_out():
    runs = [
        run(3000, 5000.0, sustained=False),
        run(3000, 4000.0, sustained=False, series=SHIPPED_RETRY),
        run(3000, 10.0, series=NOTIFIER),
    ]
    assert best_shipped_runs(runs)[3000]["latency"]["ms"]["p99"] == 4000.0
    assert target_rate_p99s(runs, 3000) == []
