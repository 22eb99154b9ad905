"""The stream worker's batch runner: decide, write outputs, write state, commit. No Faust here.

Delivery is at-least-once end to end, and the runner commits the raw topic's offsets itself.
Faust's own acking is switched off for that topic, because it can commit what was never written:
`take_events` acks a batch in a `finally`, so a batch abandoned mid-write (shutdown, rebalance)
is acked; records fetched before a rebalance and skipped after it are acked unprocessed; and a
send that finally failed does not stop Faust's commit. Here each batch goes in four steps, each
waiting for Kafka's acknowledgement, the writes retried with a capped backoff while Kafka refuses:
  1. the canonical events, the subscription feeds and the dead letters;
  2. then the new latest states, to the compacted state topic that is also the Faust table's
     changelog (written to the source record's partition, so state moves with its partition).
     They are produced once the outputs are acknowledged but confirmed only before the next
     commit, by a producer of their own that lingers: a quiet cloud's states then travel in a
     request per partition per commit instead of one per batch, and a batch pays one round trip
     to Kafka, not two;
  3. then the batch's offsets may be committed (`commit_written`, on the worker's commit timer
     and at a rebalance), once every state produced so far is confirmed;
  4. a rebalance waits for the batch in flight, and a batch fetched before the rebalance is
     dropped uncommitted (it is fetched again by whoever owns its partition now), so a worker
     that lost a partition never writes its state after the new owner has started.
Records must also arrive without holes: Faust can fetch records and never hand them over (around
a rebalance). `streams.offsets.OffsetLedger` checks every record against the next offset expected
from the committed one. On a hole the runner reads the missing records straight from Kafka, by
offset, and handles them before the record that revealed it; a hole at the end of what was fetched
(nothing comes after it) is found by comparing the ledger with the consumer's position. Nothing is
ever committed past a hole.
A crash between 1 and 3 replays the batches since the last commit: their outputs are written
again (duplicates, counted as replays). A state already written implies its outputs were, so a
replayed record that the state has moved past is stale, not lost.

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
from typing import Any, Protocol

from confluent_kafka import KafkaException

from bridge.kafka_delivery import produce_and_confirm
from bridge.retry import Backoff
from schemas.raw import documents
from schemas.state import flow_key
from streams import codecs, metrics, pipeline
from streams.batch_decisions import BatchDecisions
from streams.gaps import GapFiller
from streams.offsets import ACCEPT, GAP, OffsetLedger
from streams.sweeps import TableSweeps

LOG = logging.getLogger(__name__)

# How often the worker commits the offsets of what it has written, confirming the states staged
# before (see BatchWriter.stage): a crash replays at most about this much, duplicates and no loss.
COMMIT_INTERVAL_SECONDS = 1.0


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
        state_producer: Any = None,
    ) -> None:
        """state_producer: where states are staged (see stage); the outputs' producer if None,
        whose next flush then confirms them."""
        self._producer = producer
        self._state_producer = producer if state_producer is None else state_producer
        self._delivery_timeout = delivery_timeout
        self._backoff = backoff
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="eventfed-produce")
        # States produced and not yet confirmed by a flush (key -> partition), and those Kafka
        # refused meanwhile; touched only on the writer thread.
        self._staged: dict[bytes | None, int] = {}
        self._refused_states: list[tuple[bytes | None, int]] = []

    @property
    def staged(self) -> bool:
        """Whether states wait for confirmation."""
        return bool(self._staged)

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

    async def write_then_stage(
        self, outputs: Sequence[pipeline.Output], states: Sequence[pipeline.Output]
    ) -> None:
        """Returns once Kafka holds every output (retrying what it refuses) and the states are
        produced after them, not yet confirmed: `confirm_staged` confirms them. The common case
        is one hop to the writer thread and one flush."""
        backoff = self._backoff()
        loop = asyncio.get_running_loop()
        remaining = list(outputs)
        while True:
            done, failed, first_error = await loop.run_in_executor(
                self._thread, self._write_then_stage, remaining, states
            )
            if done:
                return
            delay = backoff.next_delay()
            metrics.SEND_RETRIES.inc()
            LOG.warning(
                "kafka refused %d of %d records (%s); retrying in %.1fs",
                len(failed),
                len(remaining),
                first_error,
                delay,
            )
            remaining = failed
            await asyncio.sleep(delay)

    def _write_then_stage(
        self, outputs: Sequence[pipeline.Output], states: Sequence[pipeline.Output]
    ) -> tuple[int, list[pipeline.Output], str]:
        done, failed, first_error = self._write_groups([outputs])
        if done == 1:
            self.stage(states)
        return done, failed, first_error

    def stage(self, states: Sequence[pipeline.Output]) -> None:
        """Produce states without waiting for them (writer thread only)."""
        producer = self._state_producer
        for state in states:
            while True:
                try:
                    producer.produce(
                        state.topic,
                        key=state.key,
                        value=state.value,
                        on_delivery=self._on_state_delivery,
                        partition=-1 if state.partition is None else state.partition,
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
                except KafkaException as exc:
                    # Refused before it was queued: produced again at the next confirmation.
                    LOG.warning("kafka refused a state record: %s", exc)
                    self._refused_states.append((state.key, state.partition or 0))
                    break
            self._staged[state.key] = state.partition or 0

    def _on_state_delivery(self, error: Any, message: Any) -> None:
        if error is not None:
            self._refused_states.append((message.key(), message.partition()))

    async def confirm_staged(self) -> list[tuple[bytes | None, int]]:
        """Waits until Kafka has acknowledged or refused every staged state; returns the
        (key, partition) of each state to produce again with its latest value (`restage`):
        none when Kafka holds them all, every staged one when the flush left some unconfirmed."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._confirm_staged)

    def _confirm_staged(self) -> list[tuple[bytes | None, int]]:
        if not self._staged and not self._refused_states:
            return []
        left = self._state_producer.flush(self._delivery_timeout + 5)
        refused, self._refused_states = self._refused_states, []
        staged, self._staged = self._staged, {}
        if left:
            LOG.warning("%d state records unconfirmed after flush; producing them again", left)
            return list(staged.items())
        if refused:
            LOG.warning("kafka refused %d state records; producing them again", len(refused))
        return list(dict(refused).items())

    def flush_staged(self, timeout: float) -> int:
        """At shutdown, once the event loop has stopped: send the staged states, so the state
        topic (the API's read model) is not left a second behind while no worker runs. Their
        offsets were not committed, so whoever takes the partitions writes them again anyway.
        Returns how many were left unsent."""
        left: int = self._state_producer.flush(timeout) if self._staged else 0
        return left

    async def restage(self, states: Sequence[pipeline.Output]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self.stage, states)

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
        self.ledger = OffsetLedger()
        self.gaps = GapFiller(self, offsets, reader, stall_after)
        self.sweeps = TableSweeps(self)
        # Offsets whose records are written, waiting for the next commit (every
        # COMMIT_INTERVAL_SECONDS and at a rebalance): a commit round trip per batch would hold up
        # the next batch.
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
        self.pending_states: dict[bytes, dict[str, Any]] = {}

    def backoff(self) -> Backoff:
        return self._backoff()

    async def fill_stalled_partitions(self, partitions: set[Any], now: float) -> int:
        """See streams.gaps.GapFiller.fill_stalled_partitions."""
        return await self.gaps.fill_stalled_partitions(partitions, now)

    async def remove_expired_deletes(self, active_partitions: set[int], now: float, retention: float) -> int:
        """Tombstone deleted VMs whose retention passed, on the partitions this worker owns."""
        return await self.sweeps.remove_expired_deletes(active_partitions, now, retention)

    async def raise_stuck_actions(self, active_partitions: set[int], now: float) -> int:
        """Raise the stuck alarms now due, on the partitions this worker owns; how many."""
        return await self.sweeps.raise_stuck_actions(active_partitions, now)

    async def handle_batch(self, messages: Sequence[RawMessage]) -> None:
        async with self.write_lock:
            current = [m for m in messages if self.accepts(m.generation_id)]
            if len(current) < len(messages):
                metrics.DROPPED_AFTER_REBALANCE.inc(len(messages) - len(current))
                LOG.info("left %d records fetched before a rebalance", len(messages) - len(current))
            if not current or not await self.gaps.know_starts({m.tp for m in current}):
                return
            accepted: list[RawMessage] = []
            for message in current:
                verdict = self.ledger.admit(message.tp, message.offset)
                if verdict == GAP:
                    # The records before this one never reached the worker: they are handled
                    # first, read by offset, so the partition's order holds.
                    if accepted:
                        self.send_accepted(accepted)
                        accepted = []
                    LOG.warning(
                        "records %d..%d of %s did not reach the worker; reading them from Kafka",
                        self.ledger.expected(message.tp),
                        message.offset - 1,
                        message.tp,
                    )
                    if not await self.gaps.fill(message.tp, message.offset):
                        return
                    verdict = self.ledger.admit(message.tp, message.offset)
                if verdict == ACCEPT:
                    accepted.append(message)
                else:
                    metrics.REDELIVERED.inc()
            if accepted:
                self.send_accepted(accepted)
        await self.limit_in_flight()

    def send_accepted(self, messages: Sequence[RawMessage]) -> None:
        job = self._decide(messages)
        job.offsets = self.ledger.commit_offsets({m.tp for m in messages})
        self.send(job)

    def accepts(self, generation: int | None) -> bool:
        current = self.current_generation()
        return generation == current and current != self.revoked_generation

    async def on_partitions_revoked(self) -> None:
        """Nothing more is written until the new assignment; returns once the batch in flight
        is written and committed."""
        self.revoked_generation = self.current_generation()
        async with self.write_lock:
            await self.drain()
            backoff = self.backoff()
            while not await self.confirm_states():
                await asyncio.sleep(backoff.next_delay())
            await self.commit_written()
            self.ledger.forget_all()
            self.gaps.forget()
            self.uncommitted.clear()
            self.pending_states.clear()
            # Loaded again from the table, for whichever partitions are this worker's next.
            self.processor.fleet_flow.forget()

    async def confirm_states(self) -> bool:
        """Whether Kafka holds every state staged so far; those it refused (or left unconfirmed)
        are produced again with the latest state of their VM, for the next confirmation."""
        again = await self.writer.confirm_staged()
        if not again:
            return True
        metrics.SEND_RETRIES.inc()
        latest = [
            pipeline.Output(
                self.state_topic,
                key,
                None if self.state.get(key) is None else codecs.encode_json_dict(self.state[key]),
                [],
                partition,
            )
            for key, partition in again
            if key is not None
        ]
        await self.writer.restage(latest)
        return False

    async def commit_written(self) -> None:
        """Commit the offsets of every batch written so far, once the states staged so far are
        confirmed. Only batches whose outputs are written and states staged are in
        `uncommitted`, so this needs no lock; a refused commit (or states not yet confirmed) is
        tried again next time unless a later batch of that partition has superseded it."""
        offsets, self.uncommitted = self.uncommitted, {}
        if not offsets and not self.writer.staged:
            # Nothing arrived since the last commit: no hop to the writer thread, no request.
            return
        # The states of the batches taken above were staged before this confirmation is queued
        # on the writer thread, so it covers them.
        if not await self.confirm_states():
            for tp, offset in offsets.items():
                self.uncommitted.setdefault(tp, offset)
            return
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

    def _decide(self, messages: Sequence[RawMessage]) -> BatchDecisions:
        """Every outcome of a batch, deciding each notification against the state it will find
        once the batches before it are written."""
        started = time.monotonic()
        now = time.time()
        state = self.state
        pending = self.pending_states
        job = BatchDecisions(started=started, records=len(messages))

        def current_state(key: bytes) -> Mapping[str, Any] | None:
            if key in pending:
                return pending[key]
            value: Mapping[str, Any] | None = state.get(key)
            return value

        process = self.processor.process
        flow = self.processor.fleet_flow
        for message in messages:
            if not flow.loaded(message.partition):
                self.load_flow(message.partition)
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
        self.stage_flow(job)
        metrics.PHASE_SECONDS.labels("process").observe(time.monotonic() - started)
        return job

    def load_flow(self, partition: int) -> None:
        """The raw partition's fleet flow (streams.fleet) as the state table has it, before
        anything is counted into it."""
        key = flow_key(partition)
        self.processor.fleet_flow.load(partition, self.pending_states.get(key, self.state.get(key)))

    def stage_flow(self, job: BatchDecisions) -> None:
        """The fleet flow records the job's decisions changed, written with its states: an
        event's count goes to Kafka with the state that applied it, and is replayed with it."""
        for partition, record in self.processor.fleet_flow.take_changed():
            key = flow_key(partition)
            self.pending_states[key] = record
            job.states[key] = (partition, record)

    def send(self, job: BatchDecisions) -> asyncio.Task[None]:
        previous = self._in_flight[-1] if self._in_flight else None
        task = asyncio.ensure_future(self._write(job, previous))
        self._in_flight.append(task)
        return task

    async def _write(self, job: BatchDecisions, previous: asyncio.Task[None] | None) -> None:
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
        await self.writer.write_then_stage(job.outputs, state_outputs)
        metrics.PHASE_SECONDS.labels("write").observe(time.monotonic() - written_from)
        for outcome in job.outcomes:
            count(outcome)
        for key, (_, new_state) in job.states.items():
            if new_state is None:
                self.state.pop(key, None)
            else:
                self.state[key] = new_state
            if key in self.pending_states and self.pending_states[key] is new_state:
                del self.pending_states[key]
        for tp, offset in job.offsets.items():
            self.uncommitted[tp] = offset
        self.processed += len(job.outcomes)
        if job.records:
            metrics.BATCH_SIZE.observe(job.records)
            metrics.BATCH_SECONDS.observe(time.monotonic() - job.started)

    async def limit_in_flight(self) -> None:
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
            self.pending_states.clear()
        task.result()


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
    if outcome.kind in (pipeline.METERED, pipeline.MEASURED):
        metrics.count_measurement(outcome.kind, outcome.counts, len(outcome.outputs))
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
