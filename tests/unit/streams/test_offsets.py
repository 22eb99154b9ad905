"""OffsetLedger: which raw records the worker may handle, and what it may commit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.offsets import ACCEPT, GAP, REDELIVERED, OffsetLedger

P0, P1 = ("raw", 0), ("raw", 1)


def test_records_in_order_from_the_committed_offset_are_accepted_and_committed_one_past():
    ledger = OffsetLedger()
    assert ledger.unknown({P0, P1}) == {P0, P1}
    ledger.start({P0: 10, P1: 0})
    assert ledger.unknown({P0, P1}) == set()
    assert [ledger.admit(P0, o) for o in (10, 11, 12)] == [ACCEPT] * 3
    assert ledger.admit(P1, 0) == ACCEPT
    assert ledger.commit_offsets({P0, P1}) == {P0: 13, P1: 1}


def test_a_hole_is_never_committed_past_and_once_filled_the_next_record_is_accepted():
    ledger = OffsetLedger()
    ledger.start({P0: 5})
    assert ledger.admit(P0, 5) == ACCEPT
    # 6..8 never reached the worker: 9 is a gap, and so is everything after it.
    assert ledger.admit(P0, 9) == GAP
    assert ledger.admit(P0, 10) == GAP
    assert ledger.commit_offsets({P0}) == {P0: 6}
    assert [ledger.admit(P0, o) for o in (6, 7, 8, 9)] == [ACCEPT] * 4  # read by offset, then 9
    assert ledger.admit(P0, 7) == REDELIVERED  # delivered after all, late
    assert ledger.commit_offsets({P0}) == {P0: 10}


def test_records_deleted_by_retention_are_skipped_and_never_move_the_ledger_back():
    ledger = OffsetLedger()
    ledger.start({P0: 5})
    ledger.skip_to(P0, 8)
    assert ledger.expected(P0) == 8
    assert ledger.admit(P0, 8) == ACCEPT
    ledger.skip_to(P0, 6)
    assert ledger.expected(P0) == 9


def test_records_before_the_expected_offset_are_redeliveries_and_change_nothing():
    ledger = OffsetLedger()
    ledger.start({P0: 3})
    assert [ledger.admit(P0, o) for o in (3, 4)] == [ACCEPT, ACCEPT]
    assert ledger.admit(P0, 3) == REDELIVERED
    assert ledger.commit_offsets({P0}) == {P0: 5}


def test_a_rebalance_forgets_everything_and_start_does_not_move_a_known_partition():
    ledger = OffsetLedger()
    ledger.start({P0: 3})
    ledger.admit(P0, 3)
    ledger.start({P0: 0})  # a late answer for a partition already under way
    assert ledger.expected(P0) == 4
    ledger.forget_all()
    assert ledger.unknown({P0}) == {P0}
    assert ledger.commit_offsets({P0}) == {}


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=200), st.integers(0, 20))
def test_the_committed_offset_never_passes_a_record_that_was_not_accepted(deliveries, start):
    """Whatever order and holes the records come in, everything below the offset to commit was
    accepted exactly once."""
    ledger = OffsetLedger()
    ledger.start({P0: start})
    accepted = []
    for offset in deliveries:
        if ledger.admit(P0, offset) == ACCEPT:
            accepted.append(offset)
    commit = ledger.commit_offsets({P0})[P0]
    assert accepted == list(range(start, commit))
