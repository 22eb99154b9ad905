"""The batch runner's protocol with fakes: outputs, then state, then commit; retries; rebalances."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass

import pytest

from bridge.retry import Backoff
from bridge.simulator.novasim import SimulatedCloud, raw_record
from streams import gaps as gaps_module
from streams import pipeline
from streams import sweeps as sweeps_module
from streams.runner import BatchRunner, BatchWriter
from tests.support.fake_message import FakeMessage

RAW, EVENTS, DLQ, STATE = "raw", "events", "dlq", "state"


@dataclass(frozen=True)
class Message:
    tp: tuple[str, int]
    offset: int
    key: bytes | None
    value: bytes | None
    generation_id: int | None = 1
    headers: list | None = None

    @property
    def topic(self) -> str:
        return self.tp[0]

    @property
    def partition(self) -> int:
        return self.tp[1]


class Journal(list):
    """What happened, in order, across the fakes."""


class FakeProducer:
    """Confirms every record on flush, except while `refusing` says so."""

    def __init__(self, journal: Journal, refusals: int = 0) -> None:
        self.journal = journal
        self.refusals = refusals
        self.pending: list = []
        self.flushes = 0

    def produce(self, topic, key=None, value=None, headers=None, on_delivery=None, partition=-1):
        self.pending.append((topic, key, value, partition, on_delivery))

    def poll(self, _timeout):
        return 0

    def flush(self, _timeout=None):
        refuse = self.refusals > 0
        self.refusals -= 1
        self.flushes += 1
        for topic, key, value, partition, callback in self.pending:
            if refuse:
                callback("broker down", FakeMessage(topic, key, value, partition))
            else:
                self.journal.append(("write", topic, key, partition))
                callback(None, FakeMessage(topic, key, value, partition))
        if refuse:
            self.journal.append(("refused", len(self.pending)))
        self.pending = []
        return 0


class FakeOffsets:
    def __init__(self, journal: Journal, committed: dict | None = None) -> None:
        self.journal = journal
        self.committed = dict(committed or {})
        self.position: dict = {}

    async def commit(self, offsets):
        self.journal.append(("commit", dict(offsets)))
        self.committed.update(offsets)
        return len(offsets)

    async def starts(self, partitions):
        return {tp: self.committed.get(tp, 0) for tp in partitions}

    async def positions(self, partitions):
        return {tp: self.position[tp] for tp in partitions if tp in self.position}


@dataclass
class Read:
    records: list
    log_start: int


class FakeReader:
    """The partitions' logs as Kafka holds them: records by offset, from `log_start`."""

    def __init__(self, messages=(), log_start: int = 0, failures: int = 0) -> None:
        self.log = {(m.tp, m.offset): m for m in messages}
        self.log_start = log_start
        self.failures = failures
        self.reads: list[tuple] = []

    async def read(self, tp, start, end, limit):
        self.reads.append((tp, start, end))
        if self.failures:
            self.failures -= 1
            raise RuntimeError("broker down")
        begin = max(start, self.log_start)
        offsets = range(begin, min(end, begin + limit))
        return Read([self.log[(tp, o)] for o in offsets if (tp, o) in self.log], self.log_start)

    def close(self):
        pass

    async def log_ends(self, partitions):
        return {tp: 1 + max((o for t, o in self.log if t == tp), default=-1) for tp in partitions}


def quick_backoff() -> Backoff:
    return Backoff(0.001, 0.002)


def make_runner(
    journal: Journal,
    refusals: int = 0,
    generation: list[int] | None = None,
    max_in_flight: int = 1,
    reader: FakeReader | None = None,
    stall_after: float = 5.0,
    state_producer: FakeProducer | None = None,
):
    generation = generation if generation is not None else [1]
    producer = FakeProducer(journal, refusals)
    offsets = FakeOffsets(journal)
    processor = pipeline.Processor(pipeline.Topics(EVENTS, DLQ), lambda: [], 600)
    runner = BatchRunner(
        processor,
        BatchWriter(producer, delivery_timeout=1.0, backoff=quick_backoff, state_producer=state_producer),
        offsets,
        reader if reader is not None else FakeReader(),
        {},
        STATE,
        current_generation=lambda: generation[0],
        backoff=quick_backoff,
        stall_after=stall_after,
        max_in_flight=max_in_flight,
    )
    return runner, producer, offsets


def reading_runner(messages, generation: list[int] | None = None, stall_after: float = 5.0):
    """A runner whose reader holds `messages` as Kafka would: (runner, offsets, reader)."""
    reader = FakeReader(messages)
    runner, _producer, offsets = make_runner(
        Journal(), generation=generation, reader=reader, stall_after=stall_after
    )
    return runner, offsets, reader


def lifecycle_messages(count: int, partition: int = 0, start: int = 0) -> list[Message]:
    cloud = SimulatedCloud(seed=3)
    vm = cloud.new_vm(0)
    notes = list(cloud.lifecycle(vm, "versioned"))[:count]
    return [
        Message(
            (RAW, partition),
            start + i,
            vm.uuid.encode(),
            json.dumps(raw_record(n, "o_r", cloud.tick())).encode(),
        )
        for i, n in enumerate(notes)
    ]


def kinds(journal: Journal) -> list[str]:
    """The journal as write-to-topic and commit steps, runs of one kind folded."""
    folded: list[str] = []
    for entry in journal:
        step = f"{entry[0]}:{entry[1]}" if entry[0] == "write" else entry[0]
        if not folded or folded[-1] != step:
            folded.append(step)
    return folded


def test_a_batch_writes_outputs_then_state_then_may_commit():
    journal = Journal()
    runner, _producer, offsets = make_runner(journal)
    messages = lifecycle_messages(4)

    async def scenario():
        await runner.handle_batch(messages)
        await runner.drain()
        assert not any(entry[0] == "commit" for entry in journal), "committed before the timer"
        await runner.commit_written()

    asyncio.run(scenario())
    assert kinds(journal) == [f"write:{EVENTS}", f"write:{STATE}", "commit"]
    assert offsets.committed == {(RAW, 0): 4}
    assert len(runner.state) == 1 and runner.processed == 4
    # State goes to the partition of the raw record it came from.
    assert {entry[3] for entry in journal if entry[0] == "write" and entry[1] == STATE} == {0}


def test_states_wait_in_their_own_producer_until_the_commit_confirms_them():
    journal = Journal()
    states = FakeProducer(journal)
    runner, producer, offsets = make_runner(journal, state_producer=states)
    messages = lifecycle_messages(4)

    async def scenario():
        await runner.handle_batch(messages[:2])
        await runner.handle_batch(messages[2:])
        await runner.drain()
        # Each batch paid one flush, of its outputs; the states wait for the commit.
        assert producer.flushes == 2 and states.flushes == 0
        assert not any(entry[1] == STATE for entry in journal if entry[0] == "write")
        await runner.commit_written()

    asyncio.run(scenario())
    assert kinds(journal) == [f"write:{EVENTS}", f"write:{STATE}", "commit"]
    assert states.flushes == 1 and offsets.committed == {(RAW, 0): 4}
    # Both batches' states of the one VM went in the one confirmation.
    assert sum(1 for entry in journal if entry[:2] == ("write", STATE)) == 2


def test_at_shutdown_the_staged_states_are_sent_without_a_commit():
    journal = Journal()
    states = FakeProducer(journal)
    runner, _producer, offsets = make_runner(journal, state_producer=states)

    async def scenario():
        await runner.handle_batch(lifecycle_messages(2))
        await runner.drain()

    asyncio.run(scenario())
    assert runner.writer.flush_staged(1.0) == 0
    assert kinds(journal) == [f"write:{EVENTS}", f"write:{STATE}"] and offsets.committed == {}
    quiet = FakeProducer(Journal())
    idle_runner, _, _ = make_runner(Journal(), state_producer=quiet)
    assert idle_runner.writer.flush_staged(1.0) == 0 and quiet.flushes == 0


def test_a_refused_state_is_produced_again_as_the_latest_and_nothing_is_committed_meanwhile():
    journal = Journal()
    states = FakeProducer(journal, refusals=1)
    runner, _producer, offsets = make_runner(journal, state_producer=states)
    messages = lifecycle_messages(4)
    produced: list[bytes] = []
    original_produce = states.produce

    def produce(topic, key=None, value=None, headers=None, on_delivery=None, partition=-1):
        produced.append(value)
        original_produce(topic, key, value, headers, on_delivery, partition)

    states.produce = produce  # type: ignore[method-assign]

    async def scenario():
        await runner.handle_batch(messages[:2])
        await runner.handle_batch(messages[2:])
        await runner.commit_written()
        assert offsets.committed == {} and ("refused", 2) in journal, "committed unconfirmed states"
        await runner.commit_written()

    asyncio.run(scenario())
    assert offsets.committed == {(RAW, 0): 4}
    (key,) = runner.state
    written = [entry for entry in journal if entry[:2] == ("write", STATE)]
    # The VM's latest state once, on its partition: never the older one after the newer.
    assert written == [("write", STATE, key, 0)]
    assert len(produced) == 3 and json.loads(produced[-1]) == runner.state[key]
    assert json.loads(produced[0]) != runner.state[key], "the first batch's state was not older"
    assert kinds(journal)[-2:] == [f"write:{STATE}", "commit"]


def test_a_commit_with_nothing_arrived_sends_nothing():
    journal = Journal()
    states = FakeProducer(journal)
    runner, producer, _offsets = make_runner(journal, state_producer=states)

    async def scenario():
        for _ in range(3):
            await runner.commit_written()

    asyncio.run(scenario())
    assert journal == [] and producer.flushes == 0 and states.flushes == 0


def test_a_rebalance_confirms_the_staged_states_before_it_commits():
    journal = Journal()
    states = FakeProducer(journal, refusals=2)
    runner, _producer, offsets = make_runner(journal, state_producer=states)

    async def scenario():
        await runner.handle_batch(lifecycle_messages(3))
        await runner.on_partitions_revoked()

    asyncio.run(scenario())
    steps = kinds(journal)
    assert steps.index("commit") > steps.index(f"write:{STATE}")
    assert sum(1 for entry in journal if entry[0] == "refused") == 2
    assert offsets.committed == {(RAW, 0): 3}


def test_a_refused_write_is_retried_and_nothing_is_committed_meanwhile():
    journal = Journal()
    runner, _producer, offsets = make_runner(journal, refusals=3, max_in_flight=4)
    messages = lifecycle_messages(3)

    async def scenario():
        await runner.handle_batch(messages)
        await runner.commit_written()
        assert runner.uncommitted == {} and not any(e[0] == "commit" for e in journal), "committed unwritten"
        await runner.drain()
        await runner.commit_written()

    asyncio.run(scenario())
    steps = kinds(journal)
    assert steps[:2] == ["refused", f"write:{EVENTS}"]
    assert steps.index("commit") > steps.index(f"write:{STATE}") > steps.index(f"write:{EVENTS}")
    assert sum(1 for entry in journal if entry[0] == "refused") == 3
    assert offsets.committed == {(RAW, 0): 3}


@pytest.mark.parametrize("max_in_flight", [1, 4])
def test_a_rebalance_waits_for_the_batch_in_flight_and_drops_what_was_fetched_before_it(max_in_flight):
    journal = Journal()
    generation = [1]
    runner, _producer, offsets = make_runner(journal, generation=generation, max_in_flight=max_in_flight)
    release = asyncio.Event()
    original_write_all = runner.writer.write_then_stage

    async def slow_write_all(outputs, states):
        journal.append(("writing",))
        await release.wait()
        await original_write_all(outputs, states)

    runner.writer.write_then_stage = slow_write_all  # type: ignore[method-assign]

    async def scenario():
        batch = asyncio.create_task(runner.handle_batch(lifecycle_messages(2)))
        await asyncio.sleep(0.01)
        revoke = asyncio.create_task(runner.on_partitions_revoked())
        await asyncio.sleep(0.01)
        assert not revoke.done(), "the rebalance did not wait for the batch in flight"
        release.set()
        await asyncio.gather(batch, revoke)
        journal.append(("revoked",))
        # Records of the revoked generation are left for the partition's next owner.
        await runner.handle_batch(lifecycle_messages(2, start=2))
        generation[0] = 2

    asyncio.run(scenario())
    steps = kinds(journal)
    assert steps.index("revoked") > steps.index("commit") > steps.index(f"write:{STATE}")
    assert steps[-1] == "revoked", "a batch of the revoked generation was written"
    assert offsets.committed == {(RAW, 0): 2} and runner.uncommitted == {}


def events_in_order(journal: Journal) -> list[int]:
    """The raw offsets behind the canonical events written, in the order written."""
    return [entry[2] for entry in journal if entry[0] == "write" and entry[1] == EVENTS]


def test_a_hole_is_read_from_kafka_and_handled_in_order_before_the_record_that_revealed_it():
    journal = Journal()
    messages = lifecycle_messages(6)
    reader = FakeReader(messages)
    runner, _producer, offsets = make_runner(journal, reader=reader)
    delivered = messages[:2] + messages[4:]  # offsets 2 and 3 never reached the runner

    async def scenario():
        await runner.handle_batch(delivered)
        await runner.drain()
        await runner.commit_written()
        await runner.handle_batch(messages[2:4])  # delivered late after all: handled already

    asyncio.run(scenario())
    assert reader.reads == [((RAW, 0), 2, 4)]
    assert offsets.committed == {(RAW, 0): 6}
    assert runner.processed == 6
    written = [entry for entry in journal if entry[0] == "write" and entry[1] == EVENTS]
    assert len(written) == 6, "a record was handled twice or not at all"
    states = [entry for entry in journal if entry[0] == "write" and entry[1] == STATE]
    assert states, "no state was written"


def test_the_hole_is_handled_between_the_records_around_it():
    """Per-VM order: the outputs and the final state are the same as with no hole at all."""
    messages = lifecycle_messages(8)

    def run(batches):
        journal = Journal()
        runner, producer, _offsets = make_runner(journal, reader=FakeReader(messages))
        written: list = []
        original_produce = producer.produce

        def produce(topic, key=None, value=None, headers=None, on_delivery=None, partition=-1):
            written.append((topic, value))
            original_produce(topic, key, value, headers, on_delivery, partition)

        producer.produce = produce  # type: ignore[method-assign]

        async def scenario():
            for batch in batches:
                await runner.handle_batch(batch)
            await runner.drain()

        asyncio.run(scenario())
        return written, dict(runner.state)

    in_order = run([messages])
    with_hole = run([messages[:1] + messages[5:]])
    assert [v for t, v in with_hole[0] if t == EVENTS] == [v for t, v in in_order[0] if t == EVENTS]
    assert with_hole[1] == in_order[1]


def lost_to_retention() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("eventfed_stream_lost_to_retention_total") or 0.0


def test_records_deleted_by_retention_in_a_hole_are_counted_lost_and_the_rest_flows():
    journal = Journal()
    messages = lifecycle_messages(6)
    # Retention took 0..2 before they were read; 3 is held.
    runner, _producer, offsets = make_runner(journal, reader=FakeReader(messages, log_start=3))
    lost_before = lost_to_retention()

    async def scenario():
        await runner.handle_batch(messages[4:])
        await runner.drain()
        await runner.commit_written()

    asyncio.run(scenario())
    assert lost_to_retention() - lost_before == 3
    assert offsets.committed == {(RAW, 0): 6}
    assert runner.processed == 3  # 3 read over the hole, 4 and 5 delivered


def test_a_failing_read_is_retried_and_nothing_is_committed_past_the_hole_meanwhile():
    journal = Journal()
    messages = lifecycle_messages(4)
    reader = FakeReader(messages, failures=2)
    runner, _producer, offsets = make_runner(journal, reader=reader)

    async def scenario():
        await runner.handle_batch(messages[:1] + messages[3:])
        await runner.drain()
        await runner.commit_written()

    asyncio.run(scenario())
    assert len(reader.reads) == 3
    assert offsets.committed == {(RAW, 0): 4}
    assert runner.processed == 4


def test_a_rebalance_during_a_failing_read_leaves_the_rest_to_the_next_owner():
    journal = Journal()
    messages = lifecycle_messages(4)
    generation = [1]
    reader = FakeReader(messages, failures=1_000)
    runner, _producer, offsets = make_runner(journal, generation=generation, reader=reader)
    original_read = reader.read

    async def read_then_rebalance(tp, start, end, limit):
        generation[0] = 2
        return await original_read(tp, start, end, limit)

    reader.read = read_then_rebalance  # type: ignore[method-assign]

    async def scenario():
        await runner.handle_batch(messages[:1] + messages[3:])
        await runner.drain()
        await runner.commit_written()

    asyncio.run(scenario())
    assert offsets.committed == {(RAW, 0): 1}, "committed past a hole that was never read"
    assert runner.processed == 1


@pytest.mark.parametrize(
    ("position", "quiet_checks", "filled_at"),
    [
        (5, (100.0, 104.0), 105.0),  # 2..4 fetched, never handed over: read after 5 s
        (2, (100.0, 105.0, 129.0), 130.0),  # the consumer stopped fetching 2..4: read after 30 s
    ],
    ids=["fetched-not-handed-over", "not-fetched"],
)
def test_a_hole_with_nothing_after_it_is_read_once_the_partition_has_stalled(
    position, quiet_checks, filled_at
):
    """No later record reveals such a hole: the consumer's position or the log's end does."""
    messages = lifecycle_messages(5)
    runner, offsets, reader = reading_runner(messages)
    tp = (RAW, 0)

    async def scenario():
        await runner.handle_batch(messages[:2])
        offsets.position[tp] = position
        for now in quiet_checks:
            assert await runner.fill_stalled_partitions({tp}, now=now) == 0
        assert reader.reads == []
        assert await runner.fill_stalled_partitions({tp}, now=filled_at) == 1
        await runner.drain()
        await runner.commit_written()
        assert await runner.fill_stalled_partitions({tp}, now=filled_at + 100) == 0  # caught up

    asyncio.run(scenario())
    assert reader.reads == [(tp, 2, 5)]
    assert offsets.committed == {tp: 5}
    assert runner.processed == 5


def test_a_stalled_partition_is_read_a_bounded_stretch_at_a_time(monkeypatch):
    monkeypatch.setattr(gaps_module, "STALL_FILL_LIMIT", 3)
    messages = lifecycle_messages(8)
    runner, offsets, reader = reading_runner(messages)
    tp = (RAW, 0)

    async def scenario():
        await runner.handle_batch(messages[:1])
        offsets.position[tp] = 8
        for now in (100.0, 105.0, 106.0, 111.0):
            await runner.fill_stalled_partitions({tp}, now=now)
        await runner.drain()

    asyncio.run(scenario())
    # 1..3 at 105; at 106 the partition has moved on, so it waits again, and 4..6 at 111.
    assert reader.reads == [(tp, 1, 4), (tp, 4, 7)]
    assert runner.processed == 7


def test_no_partition_is_filled_when_a_rebalance_comes_while_the_positions_are_read():
    messages = lifecycle_messages(5)
    generation = [1]
    runner, offsets, reader = reading_runner(messages, generation=generation, stall_after=0.0)
    tp = (RAW, 0)
    offsets.position[tp] = 5
    original_positions = offsets.positions

    async def positions_then_rebalance(partitions):
        generation[0] = 2  # the partitions asked about may be another worker's now
        return await original_positions(partitions)

    async def scenario():
        await runner.handle_batch(messages[:2])
        assert await runner.fill_stalled_partitions({tp}, now=100.0) == 0  # first seen behind
        offsets.positions = positions_then_rebalance  # type: ignore[method-assign]
        assert await runner.fill_stalled_partitions({tp}, now=200.0) == 0

    asyncio.run(scenario())
    assert reader.reads == []
    assert runner.processed == 2


def test_a_partition_that_moves_on_is_not_filled_and_one_never_delivered_at_all_is():
    messages = lifecycle_messages(6)
    second = lifecycle_messages(3, partition=1)
    runner, offsets, reader = reading_runner(messages + second)
    p0, p1 = (RAW, 0), (RAW, 1)

    async def scenario():
        await runner.handle_batch(messages[:2])
        offsets.position.update({p0: 6, p1: 3})  # nothing of partition 1 was ever handed over
        await runner.fill_stalled_partitions({p0, p1}, now=100.0)
        await runner.handle_batch(messages[2:4])  # partition 0 is slow, not stalled
        await runner.fill_stalled_partitions({p0, p1}, now=106.0)
        await runner.drain()

    asyncio.run(scenario())
    assert reader.reads == [(p1, 0, 3)]
    assert runner.processed == 4 + 3


def test_a_malformed_record_is_dead_lettered_and_the_batch_goes_on():
    journal = Journal()
    runner, _producer, offsets = make_runner(journal)
    messages = [Message((RAW, 1), 0, b"k", b"{not json"), *lifecycle_messages(2, partition=1, start=1)]

    async def scenario():
        await runner.handle_batch(messages)
        await runner.drain()
        await runner.commit_written()

    asyncio.run(scenario())
    topics = [entry[1] for entry in journal if entry[0] == "write"]
    assert topics.count(DLQ) == 1 and topics.count(EVENTS) == 2
    assert offsets.committed == {(RAW, 1): 3}


@pytest.mark.parametrize("retention_passed", [True, False])
def test_deleted_vms_are_tombstoned_on_owned_partitions_after_retention(retention_passed):
    journal = Journal()
    runner, _producer, _offsets = make_runner(journal)
    cloud = SimulatedCloud(seed=5)
    vm = cloud.new_vm(0)
    notes = [cloud.action(vm, "create", "end", "versioned"), cloud.action(vm, "delete", "end", "versioned")]
    messages = [
        Message((RAW, 2), i, vm.uuid.encode(), json.dumps(raw_record(n, "o_r", cloud.tick())).encode())
        for i, n in enumerate(notes)
    ]

    async def scenario():
        await runner.handle_batch(messages)
        await runner.drain()
        now = 4_000_000_000.0 if retention_passed else 0.0
        return await runner.remove_expired_deletes({2}, now, retention=3600)

    removed = asyncio.run(scenario())
    assert removed == (1 if retention_passed else 0)
    assert len(runner.state) == (0 if retention_passed else 1)
    if retention_passed:
        assert journal[-1][:2] == ("write", STATE) and journal[-1][3] == 2


def deleted_vms(count: int, partition: int) -> list[Message]:
    """Raw records of `count` VMs created and deleted, on one raw partition."""
    cloud = SimulatedCloud(seed=11)
    messages = []
    for _ in range(count):
        vm = cloud.new_vm(0)
        for note in (
            cloud.action(vm, "create", "end", "versioned"),
            cloud.action(vm, "delete", "end", "versioned"),
        ):
            record = json.dumps(raw_record(note, "o_r", cloud.tick())).encode()
            messages.append(Message((RAW, partition), len(messages), vm.uuid.encode(), record))
    return messages


def test_a_sweep_goes_a_slice_at_a_time_and_batches_are_written_between_its_slices(monkeypatch):
    monkeypatch.setattr(sweeps_module, "SWEEP_SLICE", 2)
    journal = Journal()
    runner, _producer, _offsets = make_runner(journal)
    deleted = deleted_vms(5, partition=2)
    arriving = lifecycle_messages(2, partition=3)

    async def scenario():
        await runner.handle_batch(deleted)
        await runner.drain()
        await runner.commit_written()  # the states staged meanwhile confirmed
        journal.clear()
        removed, _ = await asyncio.gather(
            runner.remove_expired_deletes({2}, 4_000_000_000.0, retention=3600),
            runner.handle_batch(arriving),
        )
        await runner.commit_written()
        return removed

    assert asyncio.run(scenario()) == 5
    assert len(runner.state) == 1  # the VM of the batch that came meanwhile
    tombstones = [i for i, entry in enumerate(journal) if entry[:2] == ("write", STATE) and entry[3] == 2]
    batch_writes = [i for i, entry in enumerate(journal) if entry[:2] == ("write", EVENTS)]
    assert len(tombstones) == 5 and batch_writes
    # The batch did not wait for the whole sweep: it was written after the first slice.
    assert tombstones[0] < batch_writes[0] < tombstones[-1]


def test_a_rebalance_ends_a_sweep_between_its_slices(monkeypatch):
    monkeypatch.setattr(sweeps_module, "SWEEP_SLICE", 2)
    journal = Journal()
    generation = [1]
    runner, producer, _offsets = make_runner(journal, generation=generation)
    flush = producer.flush

    async def scenario():
        await runner.handle_batch(deleted_vms(5, partition=2))
        await runner.drain()

        def flush_then_rebalance(timeout=None):
            left = flush(timeout)
            generation[0] = 2
            return left

        producer.flush = flush_then_rebalance
        return await runner.remove_expired_deletes({2}, 4_000_000_000.0, retention=3600)

    assert asyncio.run(scenario()) == 2
    assert len(runner.state) == 3


def test_a_packed_record_is_processed_line_by_line_and_a_bad_line_is_dead_lettered_alone():
    from schemas.raw import HEADER_SOURCE_INDEX, RawRecord, pack

    journal = Journal()
    runner, producer, offsets = make_runner(journal)
    lines = [m.value for m in lifecycle_messages(3)]
    raw = [
        RawRecord(b"vm", line, [("vim_id", b"o_r")]) for line in (lines[0], b"{broken", lines[1], lines[2])
    ]
    (packed,) = pack(raw, lambda _key: 5, 100, 1_000_000)
    assert packed.partition == 5 and packed.value.count(b"\n") == 3
    captured: list = []
    original_produce = producer.produce

    def produce(topic, key=None, value=None, headers=None, on_delivery=None, partition=-1):
        captured.append((topic, value, dict(headers or [])))
        original_produce(topic, key, value, headers, on_delivery, partition)

    producer.produce = produce  # type: ignore[method-assign]

    async def scenario():
        await runner.handle_batch([Message((RAW, 5), 0, packed.key, packed.value, headers=packed.headers)])
        await runner.drain()
        await runner.commit_written()

    asyncio.run(scenario())
    dead = [c for c in captured if c[0] == DLQ]
    assert len(dead) == 1 and dead[0][1] == b"{broken" and dead[0][2][HEADER_SOURCE_INDEX] == b"1"
    assert sum(1 for c in captured if c[0] == EVENTS) == 3
    assert runner.processed == 4 and offsets.committed == {(RAW, 5): 1}
    (state,) = runner.state.values()
    assert state["eventfed"]["source"] == {"topic": RAW, "partition": 5, "offset": 0, "index": 3}


def test_the_next_batch_is_decided_while_the_previous_is_written_and_writes_stay_in_order():
    journal = Journal()
    runner, _producer, offsets = make_runner(journal, max_in_flight=4)
    gate = asyncio.Event()
    original_write_all = runner.writer.write_then_stage

    async def gated_write_all(outputs, states):
        await gate.wait()
        await original_write_all(outputs, states)

    runner.writer.write_then_stage = gated_write_all  # type: ignore[method-assign]
    messages = lifecycle_messages(4)

    async def scenario():
        await runner.handle_batch(messages[:2])
        await runner.handle_batch(messages[2:])  # decided although nothing is written yet
        assert not any(entry[0] == "write" for entry in journal)
        assert len(runner._in_flight) == 2
        await runner.commit_written()
        assert offsets.committed == {}
        gate.set()
        await runner.drain()
        await runner.commit_written()

    asyncio.run(scenario())
    writes = [(entry[1], entry[2]) for entry in journal if entry[0] == "write"]
    state_writes = [i for i, (topic, _key) in enumerate(writes) if topic == STATE]
    event_writes = [i for i, (topic, _key) in enumerate(writes) if topic == EVENTS]
    # Batch 1's events, batch 1's state, batch 2's events, batch 2's state.
    assert event_writes[:2] < [state_writes[0]] * 2 and state_writes[0] < event_writes[2] < state_writes[1]
    assert offsets.committed == {(RAW, 0): 4} and runner.processed == 4
    (state,) = runner.state.values()
    assert state["eventfed"]["source"]["offset"] == 3 and runner.pending_states == {}


def test_a_batch_whose_predecessor_failed_is_never_written_nor_committed():
    journal = Journal()
    runner, _producer, offsets = make_runner(journal, max_in_flight=4)
    calls = 0
    original_write_all = runner.writer.write_then_stage

    async def failing_first(outputs, states):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("unexpected")
        await original_write_all(outputs, states)

    runner.writer.write_then_stage = failing_first  # type: ignore[method-assign]
    messages = lifecycle_messages(4)

    async def scenario():
        await runner.handle_batch(messages[:2])
        await runner.handle_batch(messages[2:])
        with pytest.raises(RuntimeError):
            await runner.drain()
        await runner.commit_written()

    asyncio.run(scenario())
    assert offsets.committed == {} and not any(entry[0] == "write" for entry in journal)


def test_with_one_batch_in_flight_a_batch_returns_only_once_written():
    journal = Journal()
    runner, _producer, offsets = make_runner(journal)
    messages = lifecycle_messages(3)

    async def scenario():
        await runner.handle_batch(messages)
        assert runner._in_flight == deque() or all(t.done() for t in runner._in_flight)
        await runner.commit_written()

    asyncio.run(scenario())
    assert offsets.committed == {(RAW, 0): 3}
