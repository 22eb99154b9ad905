"""The stream worker's batch runner: decide, write outputs, write state, commit. No Faust here.

Delivery is at-least-once end to end, and the runner commits the raw topic's offsets itself.
Faust's own acking is switched off for that topic, because it can commit what was never written:
`take_events` acks a batch in a `finally`, so a batch abandoned mid-write (shutdown, rebalance)
is acked; records fetched before a rebalance and skipped after it are acked unprocessed; and a
send that finally failed does not stop Faust's commit. Here each batch goes in four steps, each
waiting for Kafka's acknowledgement, the writes retried with a capped backoff while Kafka refuses:
  1. the canonical events, the subscription feeds and the dead letters;
  2. then the new latest states, to the compacted state topic that is also the Faust table's
     changelog (written to the source record's partition, so state moves with its partition);
  3. then the batch's offsets may be committed (`commit_written`, every 200 ms and at a
     rebalance);
  4. a rebalance waits for the batch in flight, and a batch fetched before the rebalance is
     dropped uncommitted (it is fetched again by whoever owns its partition now), so a worker
     that lost a partition never writes its state after the new owner has started.
Records must also arrive without holes: Faust can fetch records and never hand them over (around
a rebalance). `streams.offsets.OffsetLedger` checks every record against the next offset expected
from the committed one. On a hole the runner reads the missing records straight from Kafka, by
offset, and handles them before the record that revealed it; a hole at the end of what was fetched
(nothing comes after it) is found by comparing the ledger with the consumer's position. Nothing is
ever committed past a hole.
A crash between 1 and 3 replays the batch: its outputs are written again (duplicates, counted as
replays). A state already written implies its outputs were, so a replayed record that the state
has moved past is stale, not lost.

The producer, the consumer-offsets port, the state mapping and the consumer generation are passed
in, so the whole protocol is unit-tested with fakes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.kafka_delivery import produce_and_confirm
from bridge.raw import documents
from bridge.retry import Backoff
from bridge.state import source_partition
from streams import codecs, metrics, pipeline
from streams.offsets import ACCEPT, GAP, OffsetLedger

LOG = logging.getLogger(__name__)

# Records read by offset per round trip when filling a hole.
FILL_CHUNK = 500
# The most records read by offset for a stalled partition per check.
STALL_FILL_LIMIT = 4 * FILL_CHUNK
# A partition with records in its log that its consumer does not fetch is read directly once it
# has made no progress for this many times `stall_after`.
LONG_STALLS = 6
# State records looked at per hold of the write lock by the periodic sweeps (stuck actions,
# expired deletes): about 10 ms of the event loop here.
SWEEP_SLICE = 2_000


class RawMessage(Protocol):
    """What the runner reads of one fetched raw record (Faust's Message has these)."""

    @property
    def tp(self) -> Hashable: ...
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Any: ...
    @property
    def generation_id(self) -> int | None: ...


class ConsumerOffsets(Protocol):
    """The raw topic's consumer, as far as the runner needs it."""

    async def commit(self, offsets: Mapping[Any, int]) -> int: ...
    async def starts(self, partitions: set[Any]) -> dict[Any, int]: ...
    async def positions(self, partitions: set[Any]) -> dict[Any, int]: ...


class RangeRead(Protocol):
    @property
    def records(self) -> Sequence[RawMessage]: ...
    @property
    def log_start(self) -> int: ...


class RangeReader(Protocol):
    """Reads given offsets of a partition straight from Kafka (streams.range_reader)."""

    async def read(self, tp: Any, start: int, end: int, limit: int) -> RangeRead: ...
    async def log_ends(self, partitions: set[Any]) -> dict[Any, int]: ...
    def close(self) -> None: ...


class BatchWriter:
    """Produces records with librdkafka and waits until Kafka has acknowledged every one.

    Produce and flush run on one thread of their own: librdkafka works in C and releases the GIL
    while it waits, so the event loop (Faust's fetching and timers) keeps running meanwhile, and
    a send costs a few microseconds instead of an awaited future per record.
    """

    def __init__(
        self,
        producer: Any,
        delivery_timeout: float,
        backoff: Callable[[], Backoff] = lambda: Backoff(0.5, 30.0),
    ) -> None:
        self._producer = producer
        self._delivery_timeout = delivery_timeout
        self._backoff = backoff
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="eventfed-produce")

    async def write_all(self, outputs: Sequence[pipeline.Output]) -> None:
        """Returns once Kafka holds every output, retrying what it refuses."""
        await self.write_in_order([outputs])

    async def write_in_order(self, groups: Sequence[Sequence[pipeline.Output]]) -> None:
        """Writes each group only once Kafka holds every record of the groups before it; returns
        once it holds them all, retrying what it refuses. The common case, nothing refused, is
        one hop to the writer thread for all the groups."""
        remaining = [list(group) for group in groups if group]
        backoff = self._backoff()
        loop = asyncio.get_running_loop()
        while remaining:
            done, failed, first_error = await loop.run_in_executor(
                self._thread, self._write_groups, remaining
            )
            if done == len(remaining):
                return
            delay = backoff.next_delay()
            metrics.SEND_RETRIES.inc()
            LOG.warning(
                "kafka refused %d of %d records (%s); retrying in %.1fs",
                len(failed),
                len(remaining[done]),
                first_error,
                delay,
            )
            remaining = [failed, *remaining[done + 1 :]]
            await asyncio.sleep(delay)

    def _write_groups(
        self, groups: Sequence[Sequence[pipeline.Output]]
    ) -> tuple[int, list[pipeline.Output], str]:
        """How many groups Kafka took whole, then the records of the next one it refused or did
        not confirm, in their order, and the first error."""
        for index, outputs in enumerate(groups):
            # An Output has a ProduceRequest's fields: produced as it is.
            delivery = produce_and_confirm(self._producer, outputs, self._delivery_timeout)
            if delivery.failed:
                return index, [outputs[i] for i in delivery.failed], delivery.first_error
        return len(groups), [], ""


class BatchRunner:
    """Processes batches of raw records: decide, write outputs, write state, commit."""

    def __init__(
        self,
        processor: pipeline.Processor,
        writer: BatchWriter,
        offsets: ConsumerOffsets,
        reader: RangeReader,
        state: MutableMapping[bytes, Any],
        state_topic: str,
        current_generation: Callable[[], int | None],
        backoff: Callable[[], Backoff] = lambda: Backoff(0.5, 30.0),
        stall_after: float = 5.0,
        max_in_flight: int = 1,
    ) -> None:
        self.processor = processor
        self.writer = writer
        self.offsets = offsets
        self.reader = reader
        self.state = state
        self.state_topic = state_topic
        self.current_generation = current_generation
        self._backoff = backoff
        self._stall_after = stall_after
        self.ledger = OffsetLedger()
        # Per partition with records past the next offset expected: that offset, and since when
        # it has not moved (see fill_stalled_partitions).
        self._behind: dict[Any, tuple[int, float]] = {}
        # The raw partitions' log ends as last read, and when (read every `stall_after` seconds).
        self._log_ends: dict[Any, int] = {}
        self._log_ends_at = float("-inf")
        # Offsets whose records are written, waiting for the next commit (every 200 ms and at a
        # rebalance): a commit round trip per batch would hold up the next batch.
        self.uncommitted: dict[Any, int] = {}
        # Writes to Kafka happen under this lock; a rebalance takes it to wait for them.
        self.write_lock = asyncio.Lock()
        # The consumer generation whose partitions are being revoked. Its records are fetched
        # again after the new assignment (Faust seeks to the committed offsets), so they are
        # left alone; records of the current generation are never skipped, since nothing would
        # fetch them again.
        self.revoked_generation: int | None = None
        self.processed = 0
        # Batches decided but not yet confirmed, oldest first. Their writes go one batch after
        # the other (outputs, then state), while the next batch is already being decided.
        self.max_in_flight = max_in_flight
        self._in_flight: deque[asyncio.Task[None]] = deque()
        # The latest state each VM will have once the batches in flight are written.
        self._pending_states: dict[bytes, dict[str, Any]] = {}

    async def handle_batch(self, messages: Sequence[RawMessage]) -> None:
        async with self.write_lock:
            current = [m for m in messages if self.accepts(m.generation_id)]
            if len(current) < len(messages):
                metrics.DROPPED_AFTER_REBALANCE.inc(len(messages) - len(current))
                LOG.info("left %d records fetched before a rebalance", len(messages) - len(current))
            if not current or not await self._know_starts({m.tp for m in current}):
                return
            accepted: list[RawMessage] = []
            for message in current:
                verdict = self.ledger.admit(message.tp, message.offset)
                if verdict == GAP:
                    # The records before this one never reached the worker: they are handled
                    # first, read by offset, so the partition's order holds.
                    if accepted:
                        self._send_accepted(accepted)
                        accepted = []
                    LOG.warning(
                        "records %d..%d of %s did not reach the worker; reading them from Kafka",
                        self.ledger.expected(message.tp),
                        message.offset - 1,
                        message.tp,
                    )
                    if not await self._fill(message.tp, message.offset):
                        return
                    verdict = self.ledger.admit(message.tp, message.offset)
                if verdict == ACCEPT:
                    accepted.append(message)
                else:
                    metrics.REDELIVERED.inc()
            if accepted:
                self._send_accepted(accepted)
        await self._limit_in_flight()

    def _send_accepted(self, messages: Sequence[RawMessage]) -> None:
        job = self._decide(messages)
        job.offsets = self.ledger.commit_offsets({m.tp for m in messages})
        self._send(job)

    async def _know_starts(self, partitions: set[Any]) -> bool:
        """Load where newly assigned partitions start; False if a rebalance came first."""
        unknown = self.ledger.unknown(partitions)
        backoff = self._backoff()
        while unknown:
            generation = self.current_generation()
            try:
                self.ledger.start(await self.offsets.starts(unknown))
                return True
            except Exception as exc:
                delay = backoff.next_delay()
                LOG.warning("cannot read committed offsets (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
            if not self.accepts(generation):
                return False
        return True

    async def _fill(self, tp: Any, end: int) -> bool:
        """Read the records of `tp` from the next one expected up to `end` (exclusive) straight
        from Kafka and handle them, in chunks; False if a rebalance came first (the partition's
        next owner reads them from the committed offset)."""
        metrics.GAP_FILLS.inc()
        backoff = self._backoff()
        generation = self.current_generation()
        while (expected := self.ledger.expected(tp)) < end:
            try:
                read = await self.reader.read(tp, expected, end, FILL_CHUNK)
            except Exception as exc:
                LOG.warning("cannot read records %d..%d of %s (%r)", expected, end - 1, tp, exc)
            else:
                accepted: list[RawMessage] = []
                for record in read.records:
                    self._lost_to_retention(tp, min(record.offset, end))
                    if self.ledger.admit(tp, record.offset) == ACCEPT:
                        accepted.append(record)
                if accepted:
                    metrics.FILLED.inc(len(accepted))
                    self._send_accepted(accepted)
                    await self._limit_in_flight()
                    continue
                if not read.records and read.log_start > expected:
                    self._lost_to_retention(tp, min(read.log_start, end))
                    continue
            delay = backoff.next_delay()
            LOG.info("records %d..%d of %s not read yet; retrying in %.1fs", expected, end - 1, tp, delay)
            await asyncio.sleep(delay)
            if not self.accepts(generation):
                return False
        return True

    def _lost_to_retention(self, tp: Any, first_held: int) -> None:
        """Records below `first_held` that the worker never handled were deleted by retention."""
        expected = self.ledger.expected(tp)
        if first_held <= expected:
            return
        metrics.LOST_TO_RETENTION.inc(first_held - expected)
        LOG.error(
            "records %d..%d of %s were deleted by retention before the worker handled them",
            expected,
            first_held - 1,
            tp,
        )
        self.ledger.skip_to(tp, first_held)

    async def fill_stalled_partitions(self, partitions: set[Any], now: float) -> int:
        """Read what never reached the worker of these (assigned) partitions, though nothing
        after it revealed the hole: records the consumer fetched (its position is past the next
        offset expected) with no progress for `stall_after` seconds, or records in the log the
        consumer never fetched, with no progress for `LONG_STALLS` times as long. Returns how
        many partitions were filled."""
        generation = self.current_generation()
        if not partitions or not self.accepts(generation):
            return 0
        # Read outside the lock, so a slow answer never holds up batches or a rebalance; a
        # position read a moment ago is at most behind, and a stall takes seconds to count.
        try:
            positions = await self.offsets.positions(partitions)
            if now - self._log_ends_at >= self._stall_after:
                self._log_ends = await self.reader.log_ends(partitions)
                self._log_ends_at = now
        except Exception as exc:
            LOG.warning("cannot read the raw partitions' positions (%r)", exc)
            return 0
        filled = 0
        async with self.write_lock:
            # `partitions` are the assignment of `generation`: after a rebalance, not this one's.
            if self.current_generation() != generation or not self.accepts(generation):
                return 0
            if not await self._know_starts(partitions):
                return 0
            for tp in partitions:
                expected = self.ledger.expected(tp)
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
                if not await self._fill(tp, end):
                    break
                filled += 1
        await self._limit_in_flight()
        return filled

    def accepts(self, generation: int | None) -> bool:
        current = self.current_generation()
        return generation == current and current != self.revoked_generation

    async def on_partitions_revoked(self) -> None:
        """Nothing more is written until the new assignment; returns once the batch in flight
        is written and committed."""
        self.revoked_generation = self.current_generation()
        async with self.write_lock:
            await self.drain()
            await self.commit_written()
            self.ledger.forget_all()
            self._behind.clear()
            self.uncommitted.clear()
            self._pending_states.clear()

    async def commit_written(self) -> None:
        """Commit the offsets of every batch written so far. Only written batches are in
        `uncommitted`, so this needs no lock; a refused commit is tried again next time unless
        a later batch of that partition has superseded it."""
        offsets, self.uncommitted = self.uncommitted, {}
        if not offsets:
            return
        try:
            committed = await self.offsets.commit(offsets)
        except Exception as exc:  # any refusal means the same: the batch is replayed if needed
            metrics.COMMIT_FAILURES.inc()
            LOG.warning("offset commit refused, the batch will be replayed if needed: %r", exc)
            committed = 0
        else:
            if not committed:
                metrics.COMMIT_FAILURES.inc()
                LOG.info("offset commit skipped: the partitions are no longer assigned")
        if not committed:
            for tp, offset in offsets.items():
                self.uncommitted.setdefault(tp, offset)

    def _decide(self, messages: Sequence[RawMessage]) -> Job:
        """Every outcome of a batch, deciding each notification against the state it will find
        once the batches before it are written."""
        started = time.monotonic()
        now = time.time()
        state = self.state
        pending = self._pending_states
        job = Job(started=started, records=len(messages))

        def current_state(key: bytes) -> Mapping[str, Any] | None:
            if key in pending:
                return pending[key]
            value: Mapping[str, Any] | None = state.get(key)
            return value

        process = self.processor.process
        for message in messages:
            value = message.value
            for index, document in enumerate(
                documents(value, message.headers) if value is not None else [None]
            ):
                source = pipeline.Source(message.topic, message.partition, message.offset, index)
                outcome = process(message.key, document, source, current_state, now)
                job.outputs.extend(outcome.outputs)
                if outcome.new_state is not None and outcome.state_key is not None:
                    pending[outcome.state_key] = outcome.new_state
                    job.states[outcome.state_key] = (message.partition, outcome.new_state)
                job.outcomes.append(outcome)
        metrics.PHASE_SECONDS.labels("process").observe(time.monotonic() - started)
        return job

    def _send(self, job: Job) -> asyncio.Task[None]:
        previous = self._in_flight[-1] if self._in_flight else None
        task = asyncio.ensure_future(self._write(job, previous))
        self._in_flight.append(task)
        return task

    async def _write(self, job: Job, previous: asyncio.Task[None] | None) -> None:
        """Write a decided batch once the one before it is written: its outputs, then its states;
        only then may its offsets be committed."""
        if previous is not None:
            # A batch whose predecessor failed is not written either: committing past a batch
            # that was never written would lose it. The failure stops the worker; the next
            # owner of these partitions replays them.
            await previous
        written_from = time.monotonic()
        state_outputs = [
            pipeline.Output(
                self.state_topic,
                key,
                None if new_state is None else codecs.encode_json_dict(new_state),
                [],
                partition,
            )
            for key, (partition, new_state) in job.states.items()
        ]
        await self.writer.write_in_order([job.outputs, state_outputs])
        metrics.PHASE_SECONDS.labels("write").observe(time.monotonic() - written_from)
        for outcome in job.outcomes:
            count(outcome)
        for key, (_, new_state) in job.states.items():
            if new_state is None:
                self.state.pop(key, None)
            else:
                self.state[key] = new_state
            if key in self._pending_states and self._pending_states[key] is new_state:
                del self._pending_states[key]
        for tp, offset in job.offsets.items():
            self.uncommitted[tp] = offset
        self.processed += len(job.outcomes)
        if job.records:
            metrics.BATCH_SIZE.observe(job.records)
            metrics.BATCH_SECONDS.observe(time.monotonic() - job.started)

    async def _limit_in_flight(self) -> None:
        while self._in_flight and self._in_flight[0].done():
            self._settle(self._in_flight[0])
        while len(self._in_flight) >= self.max_in_flight:
            task = self._in_flight[0]
            await asyncio.wait([task])
            self._settle(task)

    async def drain(self) -> None:
        """Returns once every batch decided so far is written."""
        while self._in_flight:
            task = self._in_flight[0]
            await asyncio.wait([task])
            self._settle(task)

    def _settle(self, task: asyncio.Task[None]) -> None:
        """Drop a written batch (a rebalance may be waiting for the same one); if its writing
        failed, the batches after it fail with it (they wait for it) and the error is raised
        here, to stop the worker."""
        if self._in_flight and self._in_flight[0] is task:
            self._in_flight.popleft()
        if task.cancelled() or task.exception() is not None:
            for later in self._in_flight:
                later.cancel()
            self._in_flight.clear()
            self._pending_states.clear()
        task.result()

    async def remove_expired_deletes(self, active_partitions: set[int], now: float, retention: float) -> int:
        """Tombstone deleted VMs whose retention passed, on the partitions this worker owns."""

        def decide(keys: Sequence[bytes], job: Job) -> None:
            for key in keys:
                value = self.state.get(key)
                if (
                    value is None
                    or key in self._pending_states
                    or not pipeline.tombstone_due(value, now, retention)
                ):
                    continue
                partition = source_partition(value)
                if partition is None or partition in active_partitions:
                    job.states[key] = (partition, None)

        removed = await self._sweep(decide)
        metrics.TOMBSTONES.inc(removed)
        metrics.STATE_SIZE.set(len(self.state))
        return removed

    async def raise_stuck_actions(self, active_partitions: set[int], now: float) -> int:
        """Raise the stuck alarms now due, on the partitions this worker owns; how many.

        Each is decided against the state the VM will have once the batches in flight are
        written, and goes through the same ordered writes as a batch: its outputs, then its state.
        """
        pending = self._pending_states

        def decide(keys: Sequence[bytes], job: Job) -> None:
            for key in keys:
                value = pending.get(key, self.state.get(key))
                if value is None:
                    continue
                partition = source_partition(value)
                if partition is not None and partition not in active_partitions:
                    continue
                outcome = self.processor.expire(key, value, now)
                if outcome is None or outcome.new_state is None:
                    continue
                job.outputs.extend(outcome.outputs)
                job.outcomes.append(outcome)
                pending[key] = outcome.new_state
                job.states[key] = (partition, outcome.new_state)

        return await self._sweep(decide)

    async def _sweep(self, decide: Callable[[Sequence[bytes], Job], None]) -> int:
        """Goes over the state table SWEEP_SLICE keys at a time, each slice decided under the
        write lock and written like a batch; how many states it wrote.

        The batches run between the slices: a sweep of 100,000 VMs in one go held the worker for
        about half a second. A VM added meanwhile waits for the next sweep; a rebalance ends this
        one (the partitions it was given may no longer be this worker's).
        """
        generation = self.current_generation()
        keys = list(self.state.keys())
        written = 0
        for start in range(0, len(keys), SWEEP_SLICE):
            async with self.write_lock:
                if not self.accepts(generation):
                    break
                job = Job(started=time.monotonic())
                decide(keys[start : start + SWEEP_SLICE], job)
                task = self._send(job) if job.states else None
            if task is None:
                await asyncio.sleep(0)
                continue
            await asyncio.wait([task])
            task.result()
            written += len(job.states)
        return written


@dataclass
class Job:
    """One batch's decisions, on their way to Kafka."""

    started: float
    records: int = 0
    outputs: list[pipeline.Output] = field(default_factory=list)
    # state key -> (partition, new state, or None for a tombstone)
    states: dict[bytes, tuple[int | None, dict[str, Any] | None]] = field(default_factory=dict)
    outcomes: list[pipeline.Outcome] = field(default_factory=list)
    offsets: dict[Any, int] = field(default_factory=dict)


_COUNTERS: dict[tuple[object, ...], Any] = {}


def _counter(metric: Any, *labels: str) -> Any:
    """A labelled child, looked up once: `labels()` costs more than the increment itself."""
    key = (id(metric), *labels)
    child = _COUNTERS.get(key)
    if child is None:
        child = _COUNTERS[key] = metric.labels(*labels)
    return child


def count(outcome: pipeline.Outcome) -> None:
    """One outcome in the metrics, once its writes are confirmed."""
    event = outcome.event
    if outcome.kind == pipeline.DEAD:
        _counter(metrics.DEAD_LETTERED, outcome.reason).inc()
        return
    if outcome.kind == pipeline.IGNORED:
        metrics.IGNORED.inc()
        return
    if outcome.kind == pipeline.STUCK:
        _counter(metrics.STUCK, outcome.reason).inc()
    assert event is not None
    _counter(metrics.EVENTS, outcome.kind, event["status"], event["phase"]).inc()
    if outcome.kind == pipeline.DUPLICATE:
        _counter(metrics.DUPLICATES, outcome.reason).inc()
    elif outcome.kind == pipeline.STALE:
        _counter(metrics.STALE, outcome.reason).inc()
    elif outcome.kind == pipeline.REPLAYED:
        metrics.REPLAYED.inc()
    for name in outcome.matched:
        _counter(metrics.MATCHES, name).inc()
