"""Records that never reached the stream worker, read straight from Kafka by offset.

Faust can fetch records and never hand them over (around a rebalance). The runner's ledger
(streams.offsets) finds a hole when a later record arrives; one with nothing after it is found here,
from the consumer's position standing past the ledger (`stall_after` seconds without progress), or
from records standing in the log that the consumer never fetched (`LONG_STALLS` times as long). The
records are handled as a batch of the runner's, in partition order, before anything after them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from streams import metrics
from streams.offsets import ACCEPT

if TYPE_CHECKING:
    from streams.runner import BatchRunner, ConsumerOffsets, RangeReader, RawMessage

LOG = logging.getLogger(__name__)

# Records read by offset per request when filling a hole.
FILL_CHUNK = 500
# The most records one stalled-partition check reads: a consumer that was only slow costs a
# bounded re-read.
STALL_FILL_LIMIT = 4 * FILL_CHUNK
# Records in the log that the consumer never fetched are read after this many stall periods.
LONG_STALLS = 6


class GapFiller:
    """Fills a batch runner's holes from Kafka: a hole a later record revealed (`fill`), and the
    stalled partitions a periodic check finds (`fill_stalled_partitions`)."""

    def __init__(
        self, runner: BatchRunner, offsets: ConsumerOffsets, reader: RangeReader, stall_after: float
    ) -> None:
        self._runner = runner
        self._offsets = offsets
        self._reader = reader
        self._stall_after = stall_after
        # Per partition with records past the next offset expected: that offset, and since when
        # it has not moved (see fill_stalled_partitions).
        self._behind: dict[Any, tuple[int, float]] = {}
        # The raw partitions' log ends as last read, and when (read every `stall_after` seconds).
        self._log_ends: dict[Any, int] = {}
        self._log_ends_at = float("-inf")

    def forget(self) -> None:
        """A rebalance: the partitions' stalls start over."""
        self._behind.clear()

    async def know_starts(self, partitions: set[Any]) -> bool:
        """Load where newly assigned partitions start; False if a rebalance came first."""
        unknown = self._runner.ledger.unknown(partitions)
        backoff = self._runner.backoff()
        while unknown:
            generation = self._runner.current_generation()
            try:
                self._runner.ledger.start(await self._offsets.starts(unknown))
                return True
            except Exception as exc:
                delay = backoff.next_delay()
                LOG.warning("cannot read committed offsets (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
            if not self._runner.accepts(generation):
                return False
        return True

    async def fill(self, tp: Any, end: int) -> bool:
        """Read the records of `tp` from the next one expected up to `end` (exclusive) straight
        from Kafka and handle them, in chunks; False if a rebalance came first (the partition's
        next owner reads them from the committed offset)."""
        metrics.GAP_FILLS.inc()
        backoff = self._runner.backoff()
        generation = self._runner.current_generation()
        while (expected := self._runner.ledger.expected(tp)) < end:
            try:
                read = await self._reader.read(tp, expected, end, FILL_CHUNK)
            except Exception as exc:
                LOG.warning("cannot read records %d..%d of %s (%r)", expected, end - 1, tp, exc)
            else:
                accepted: list[RawMessage] = []
                for record in read.records:
                    self.lost_to_retention(tp, min(record.offset, end))
                    if self._runner.ledger.admit(tp, record.offset) == ACCEPT:
                        accepted.append(record)
                if accepted:
                    metrics.FILLED.inc(len(accepted))
                    self._runner.send_accepted(accepted)
                    await self._runner.limit_in_flight()
                    continue
                if not read.records and read.log_start > expected:
                    self.lost_to_retention(tp, min(read.log_start, end))
                    continue
            delay = backoff.next_delay()
            LOG.info("records %d..%d of %s not read yet; retrying in %.1fs", expected, end - 1, tp, delay)
            await asyncio.sleep(delay)
            if not self._runner.accepts(generation):
                return False
        return True

    def lost_to_retention(self, tp: Any, first_held: int) -> None:
        """Records below `first_held` that the worker never handled were deleted by retention."""
        expected = self._runner.ledger.expected(tp)
        if first_held <= expected:
            return
        metrics.LOST_TO_RETENTION.inc(first_held - expected)
        LOG.error(
            "records %d..%d of %s were deleted by retention before the worker handled them",
            expected,
            first_held - 1,
            tp,
        )
        self._runner.ledger.skip_to(tp, first_held)

    async def fill_stalled_partitions(self, partitions: set[Any], now: float) -> int:
        """Read what never reached the worker of these (assigned) partitions, though nothing
        after it revealed the hole: records the consumer fetched (its position is past the next
        offset expected) with no progress for `stall_after` seconds, or records in the log the
        consumer never fetched, with no progress for `LONG_STALLS` times as long. Returns how
        many partitions were filled."""
        generation = self._runner.current_generation()
        if not partitions or not self._runner.accepts(generation):
            return 0
        # Read outside the lock, so a slow answer never holds up batches or a rebalance; a
        # position read a moment ago is at most behind, and a stall takes seconds to count.
        try:
            positions = await self._offsets.positions(partitions)
            if now - self._log_ends_at >= self._stall_after:
                self._log_ends = await self._reader.log_ends(partitions)
                self._log_ends_at = now
        except Exception as exc:
            LOG.warning("cannot read the raw partitions' positions (%r)", exc)
            return 0
        filled = 0
        async with self._runner.write_lock:
            # `partitions` are the assignment of `generation`: after a rebalance, not this one's.
            if self._runner.current_generation() != generation or not self._runner.accepts(generation):
                return 0
            if not await self.know_starts(partitions):
                return 0
            for tp in partitions:
                expected = self._runner.ledger.expected(tp)
                fetched = positions.get(tp, -1)
                end = max(fetched, self._log_ends.get(tp, -1))
                if end <= expected:
                    self._behind.pop(tp, None)
                    continue
                behind = self._behind.get(tp)
                if behind is None or behind[0] != expected:
                    self._behind[tp] = (expected, now)
                    continue
                waited = now - behind[1]
                if fetched > expected and waited >= self._stall_after:
                    what = "were fetched but did not reach the worker"
                    end = fetched
                elif waited >= LONG_STALLS * self._stall_after:
                    what = f"were not fetched in {waited:.0f}s"
                else:
                    continue
                # A bounded read: if the consumer was only slow (Kafka down for a while), what it
                # then delivers is skipped as handled, and the reading stops here.
                end = min(end, expected + STALL_FILL_LIMIT)
                LOG.warning("records %d..%d of %s %s; reading them from Kafka", expected, end - 1, tp, what)
                del self._behind[tp]
                if not await self.fill(tp, end):
                    break
                filled += 1
        await self._runner.limit_in_flight()
        return filled
