"""Which raw records the worker may handle, and so which offsets it may commit.

The raw topic's offsets are contiguous: it is neither compacted nor written in transactions. So,
per partition, the next record handled must be exactly the one after the last handled, starting
from the group's committed offset. A record past that point means records were skipped on their
way to the agent (Faust drops records fetched around a rebalance or a seek); committing past
them would lose them. A record before it was handled already (a re-fetch after a seek).

The ledger is pure bookkeeping; the worker does the seeking and committing.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["accept", "redelivered", "gap"]
ACCEPT: Verdict = "accept"
REDELIVERED: Verdict = "redelivered"
GAP: Verdict = "gap"


@dataclass
class Seek:
    """A seek back to `offset`, asked for at `since` (monotonic seconds)."""

    offset: int
    since: float


class OffsetLedger:
    """The next offset expected per partition of the current assignment."""

    def __init__(self) -> None:
        self._next: dict[Hashable, int] = {}
        self._seeks: dict[Hashable, Seek] = {}

    def forget_all(self) -> None:
        """At a rebalance: the next assignment starts again from the committed offsets."""
        self._next.clear()
        self._seeks.clear()

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
            self._seeks.pop(tp, None)
            return ACCEPT
        if offset < expected:
            return REDELIVERED
        return GAP

    def pending_seek(self, tp: Hashable) -> Seek | None:
        return self._seeks.get(tp)

    def pending_seeks(self) -> list[tuple[Hashable, Seek]]:
        return list(self._seeks.items())

    def seeking(self, tp: Hashable, offset: int, now: float) -> None:
        """A seek back to `offset` was asked for; records past it are dropped until it arrives."""
        self._next[tp] = offset
        self._seeks[tp] = Seek(offset, now)

    def commit_offsets(self, partitions: set[Hashable]) -> dict[Hashable, int]:
        """The offsets to commit for these partitions: the next record each one expects."""
        return {tp: self._next[tp] for tp in partitions if tp in self._next}
