"""The collector's tuning after start-up: what start-up built is frozen; the stream worker's
thresholds raised, the listener's left as they are."""

from __future__ import annotations

import gc

import pytest

from bridge import gc_thresholds


@pytest.fixture
def restored_collector():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_the_worker_freezes_start_up_objects_and_a_batch_can_die_young():
    built_at_start_up = [{"vm": i} for i in range(1000)]
    gc_thresholds.settle_after_start_up(gc_thresholds.WORKER_THRESHOLDS)
    assert gc.get_threshold() == gc_thresholds.WORKER_THRESHOLDS
    assert gc.get_freeze_count() >= len(built_at_start_up)
    # A batch's worth of short-lived containers triggers no young collection any more.
    gc.collect()
    collections_before = gc.get_stats()[0]["collections"]
    batch = [{"event": i} for i in range(5000)]
    del batch
    assert gc.get_stats()[0]["collections"] == collections_before


@pytest.mark.usefixtures("restored_collector")
def test_the_listener_freezes_start_up_objects_and_collects_cycles_young():
    gc.set_threshold(700, 10, 10)
    built_at_start_up = [{"vm": i} for i in range(1000)]
    gc_thresholds.settle_after_start_up()
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() >= len(built_at_start_up)

    # What oslo's receive path leaves per message: a class and closures in reference cycles.
    def receive_one() -> None:
        class Revival:
            pass

        Revival.again = lambda: Revival  # type: ignore[attr-defined]

    gc.collect()
    collections_before = gc.get_stats()[0]["collections"]
    for _ in range(500):
        receive_one()
    # Freed by young collections as they come, not left for one long collection.
    assert gc.get_stats()[0]["collections"] - collections_before >= 5
    assert gc.get_count()[0] < 700
