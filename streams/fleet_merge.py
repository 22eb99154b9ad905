"""The merge of the fleet parts into one fleet event per VIM per interval (streams.fleet, step 3).

A Faust agent reads the fleet-parts topic (keyed by the VIM) and hands each record here with the
partition it came from; the books live in a Faust table changelogged to Kafka, one per (fleet-parts
partition, interval), so a worker taking the partition over finds them where the last one left
them. A book is emitted when every raw partition's manifest is in, or at the merge deadline with
what came (the event names the raw partitions missing); then it is marked done, so a part read
again, or late, changes nothing. The events are written (and confirmed) before the book is
marked: a crash between the two writes them again, with the same eventId.

The deadline needs a record to act on (a Faust table is written from the agent that reads its
partition): the worker's timer writes a tick to each fleet-parts partition it owns whose books
have a deadline passed, and the tick, read by the agent, emits them. Books are dropped
KEEP_INTERVALS intervals after they are done.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Final

from streams import metrics
from streams.fleet import add_to_book, complete, merge_deadline, merged_figures
from streams.routing import Output
from streams.ves_measurement import FleetFigures

LOG = logging.getLogger(__name__)

TICK_KEY: Final = b"tick"
KEEP_INTERVALS: Final = 3


def book_key(merge_partition: int, start: int) -> bytes:
    return f"{merge_partition}/{start}".encode()


def _partition_of(key: Any) -> int | None:
    text = key.decode() if isinstance(key, bytes) else str(key)
    head, _, _ = text.partition("/")
    return int(head) if head.isdigit() else None


class FleetMerger:
    """The books of the fleet-parts partitions this worker reads, and their emission."""

    def __init__(
        self,
        books: MutableMapping[bytes, Any],
        outputs: Callable[[Sequence[FleetFigures]], list[Output]],
        write: Callable[[list[Output]], Awaitable[None]],
        grace: float,
    ) -> None:
        """`books`: the merge table; `outputs`: the fleet events of some figures, to every
        measurement feed that takes them; `write`: writes outputs and returns once Kafka has
        them; `grace`: the measurement grace period."""
        self._books = books
        self._outputs = outputs
        self._write = write
        self._grace = grace

    async def handle(self, merge_partition: int, value: bytes | None, now: float) -> None:
        """One record of the fleet-parts topic, read from `merge_partition`."""
        try:
            record = json.loads(value) if value is not None else None
        except ValueError:
            record = None
        if not isinstance(record, dict):
            # Only the stream workers write this topic; anything else is not theirs to merge.
            LOG.warning("skipped a fleet-parts record that is not a JSON object")
            return
        if record.get("tick"):
            await self.emit_due(merge_partition, now)
            return
        start = record.get("start")
        if type(start) is not int or type(record.get("length")) is not int:
            LOG.warning("skipped a fleet-parts record without its interval")
            return
        key = book_key(merge_partition, start)
        book = add_to_book(self._books.get(key), record)
        current = self._books.get(key)
        if book is None:
            metrics.FLEET_MERGED.labels("late" if current and current.get("done") else "again").inc()
            return
        metrics.FLEET_MERGED.labels("added").inc()
        self._books[key] = book
        if complete(book):
            await self._emit(key, book)

    def due(self, partitions: set[int], now: float) -> set[int]:
        """The fleet-parts partitions among `partitions` with a book to emit or to drop."""
        found = set()
        for key, book in list(self._books.items()):
            partition = _partition_of(key)
            if partition in partitions and isinstance(book, dict) and self._expired(book, now):
                found.add(partition)
        return found

    def _expired(self, book: dict[str, Any], now: float) -> bool:
        deadline = merge_deadline(book["start"], book["length"], self._grace)
        if book.get("done"):
            return deadline + KEEP_INTERVALS * book["length"] <= now
        return deadline <= now

    async def emit_due(self, merge_partition: int, now: float) -> None:
        """Emit the partition's books whose deadline passed; drop the old ones done."""
        for key, book in sorted(self._books.items()):
            if _partition_of(key) != merge_partition or not isinstance(book, dict):
                continue
            if not self._expired(book, now):
                continue
            if book.get("done"):
                del self._books[key]
            else:
                metrics.FLEET_INCOMPLETE.inc()
                await self._emit(key, book)

    async def _emit(self, key: bytes, book: dict[str, Any]) -> None:
        figures = merged_figures(book)
        outputs = self._outputs(figures)
        if outputs:
            await self._write(outputs)
            metrics.MEASUREMENTS.labels("vim").inc(len(outputs))
        metrics.set_fleet(figures)
        for figure in figures:
            if figure.missing_partitions:
                LOG.warning(
                    "fleet figures of %s at %d sent without raw partitions %s",
                    figure.vim_id,
                    figure.start,
                    ",".join(map(str, figure.missing_partitions)),
                )
        emitted = sorted({*book.get("emitted", []), *(f.vim_id for f in figures)})
        self._books[key] = {**book, "emitted": emitted, "done": True}


def tick(now: float) -> bytes:
    return json.dumps({"tick": 1, "at": now}).encode()
