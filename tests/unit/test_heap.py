"""The collector's tuning after start-up: what start-up built is frozen, the thresholds raised."""

from __future__ import annotations

import gc

import pytest

from bridge import heap


@pytest.fixture
def restored_collector():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_start_up_objects_are_frozen_and_a_batch_can_die_young():
    built_at_start_up = [{"vm": i} for i in range(1000)]
    heap.settle_after_start_up()
    assert gc.get_threshold() == heap.THRESHOLDS
    assert gc.get_freeze_count() >= len(built_at_start_up)
    # A batch's worth of short-lived containers triggers no young collection any more.
    gc.collect()
    collections_before = gc.get_stats()[0]["collections"]
    batch = [{"event": i} for i in range(5000)]
    del batch
    assert gc.get_stats()[0]["collections"] == collections_before
