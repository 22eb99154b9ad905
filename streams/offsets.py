"""Which raw records the worker may handle, and so which offsets it may commit.

The raw topic's offsets are contiguous: it is neither compacted nor written in transactions. So,
per partition, the next record handled must be exactly the one after the last handled, starting
from the group's committed offset. A record past that point means records were skipped on their
way to the agent (Faust can drop records fetched around a rebalance); committing past them would
lose them. A record before it was handled already (read by offset over a hole, then delivered).

The ledger is pure bookkeeping; the worker does the reading and committing.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Literal

Verdict = Literal["accept", "redelivered", "gap"]
ACCEPT: Verdict = "accept"
REDELIVERED: Verdict = "redelivered"
GAP: Verdict = "gap"


class OffsetLedger:
    """The next offset expected per partition of the current assignment."""

    def __init__(self) -> None:
        self._next: dict[Hashable, int] = {}

    def forget_all(self) -> None:
        """At a rebalance: the next assignment starts again from the committed offsets."""
        self._next.clear()

    def unknown(self, partitions: set[Hashable]) -> set[Hashable]:
        return {tp for tp in partitions if tp not in self._next}

    def start(self, starts: Mapping[Hashable, int]) -> None:
        """Where each newly seen partition starts: its committed offset (or the log start)."""
        for tp, offset in starts.items():
            self._next.setdefault(tp, offset)

    def expected(self, tp: Hashable) -> int:
        return self._next[tp]

    def admit(self, tp: Hashable, offset: int) -> Verdict:
        expected = self._next[tp]
        if offset == expected:
            self._next[tp] = offset + 1
            return ACCEPT
        if offset < expected:
            return REDELIVERED
        return GAP

    def skip_to(self, tp: Hashable, offset: int) -> None:
        """The records before `offset` are gone (deleted by retention): expect `offset` next."""
        self._next[tp] = max(self._next[tp], offset)

    def commit_offsets(self, partitions: set[Hashable]) -> dict[Hashable, int]:
        """The offsets to commit for these partitions: the next record each one expects."""
        return {tp: self._next[tp] for tp in partitions if tp in self._next}
