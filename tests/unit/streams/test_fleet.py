"""The fleet figures across partitions and workers: the flow counts kept in the state table and
written with the batch that counted them, each raw partition's parts and manifest, and the merge
into one event per VIM per interval (complete, or at the deadline naming what is missing)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bridge.simulator.novasim import SimulatedCloud, raw_record
from schemas.state import flow_key
from streams import pipeline
from streams.fleet import FLOW, FleetFlow, add_to_book, lag_percentile, merge_deadline, partition_parts
from streams.fleet_merge import FleetMerger, book_key, tick
from streams.routing import Output
from streams.subscriptions import load_subscriptions
from streams.sweeps import FleetTopic
from tests.unit.streams.test_measurement_sweep import TP
from tests.unit.streams.test_runner import STATE, FakeReader, Journal, Message, make_runner

VIM = "o_r"
RAW0 = TP("raw", 0)
INTERVAL = 10
GRACE = 2.0
PARTS = "fleet.parts"
SUBS = load_subscriptions(
    "subscriptions: [{name: m, sink: {type: kafka, topic: measurements, format: ves-measurement}}]"
)


def test_flow_records_load_back_as_counted() -> None:
    flow = FleetFlow(INTERVAL)
    flow.event(3, VIM, "CREATE", 0.0123456, False, False, 1005)
    flow.event(3, VIM, "CREATE", 0.0118, True, False, 1006)
    flow.stuck(3, VIM, 1007)
    (partition, record), *_ = flow.take_changed()
    assert partition == 3 and flow.take_changed() == []
    again = FleetFlow(INTERVAL)
    again.load(3, json.loads(json.dumps(record)))
    taken = again.take(3, 1000)[VIM]
    assert taken.events_by_kind == {"CREATE": 2} and taken.raised == 1 and taken.stuck == 1
    # Two significant digits: both lags fall on one value, counted twice.
    assert taken.lags == {"0.012": 2}
    assert again.through(3) == 1000
    # An event counted by a clock behind the interval sent goes to the next one, not a closed one.
    again.event(3, VIM, "DELETE", None, False, False, 1001)
    assert again.take(3, 1010)[VIM].events_by_kind == {"DELETE": 1}


def test_lag_percentile_is_nearest_rank_over_the_histogram() -> None:
    assert lag_percentile({}, 0.5) is None
    assert lag_percentile({"1": 1, "2": 1, "3": 1}, 0.5) == 2.0
    assert lag_percentile({"0.5": 98, "9": 2}, 0.99) == 9.0
    assert lag_percentile({"0.5": 99, "9": 1}, 0.99) == 0.5


def test_a_part_or_manifest_read_again_or_late_changes_nothing() -> None:
    parts, manifest = partition_parts(1000, INTERVAL, 0, 2, {VIM: {"ACTIVE": 1}}, {})
    book = add_to_book(None, parts[0])
    assert book is not None and add_to_book(book, parts[0]) is None
    book = add_to_book(book, manifest)
    assert book is not None and add_to_book(book, manifest) is None
    assert add_to_book({**book, "done": True}, {**manifest, "partition": 1}) is None


class FakeTable(dict[bytes, Any]):
    pass


def merger(table: FakeTable, written: list[Output]) -> FleetMerger:
    processor = pipeline.Processor(pipeline.Topics("events", "dlq"), lambda: SUBS, 600)

    async def write(outputs: list[Output]) -> None:
        written.extend(outputs)

    return FleetMerger(table, processor.fleet_outputs, write, GRACE)


def fleet_fields(output: Output) -> tuple[dict[str, Any], dict[str, Any]]:
    event = json.loads(output.value or b"")["event"]
    named = {m["name"]: m["hashMap"] for m in event["measurementFields"]["additionalMeasurements"]}
    return named, event["measurementFields"]["additionalFields"]


def test_the_merge_emits_once_when_every_partition_is_in() -> None:
    table, written = FakeTable(), []
    merge = merger(table, written)
    flows = FleetFlow(INTERVAL)
    flows.event(0, VIM, "CREATE", 1.0, False, False, 1001)
    flows.event(2, VIM, "CREATE", 3.0, False, False, 1002)

    async def scenario() -> None:
        for partition in range(3):
            statuses = {VIM: {"ACTIVE": 2}} if partition != 1 else {}
            parts, manifest = partition_parts(
                1000, INTERVAL, partition, 3, statuses, flows.take(partition, 1000)
            )
            for record in [*parts, manifest]:
                await merge.handle(0, json.dumps(record).encode(), 1013)
            if partition == 1:
                assert written == []  # two of three
        # A replay of the first partition's part, after the event went: nothing more.
        parts, _ = partition_parts(1000, INTERVAL, 0, 3, {VIM: {"ACTIVE": 2}}, {})
        await merge.handle(0, json.dumps(parts[0]).encode(), 1014)
        await merge.emit_due(0, merge_deadline(1000, INTERVAL, GRACE) + 1)

    asyncio.run(scenario())
    assert len(written) == 1 and written[0].key == VIM.encode()
    named, fields = fleet_fields(written[0])
    assert named["vmsByStatus"] == {"ACTIVE": "4"} and named["eventsByKind"] == {"CREATE": "2"}
    assert fields["partitions"] == "0,2" and "missingPartitions" not in fields
    assert table[book_key(0, 1000)]["done"] is True
    assert merge.due({0}, merge_deadline(1000, INTERVAL, GRACE) + 3 * INTERVAL) == {0}


def test_the_merge_deadline_sends_what_came_naming_the_missing_partitions() -> None:
    table, written = FakeTable(), []
    merge = merger(table, written)
    deadline = merge_deadline(1000, INTERVAL, GRACE)

    async def scenario() -> None:
        parts, manifest = partition_parts(1000, INTERVAL, 1, 3, {VIM: {"SHUTOFF": 1}}, {})
        for record in [*parts, manifest]:
            await merge.handle(5, json.dumps(record).encode(), 1013)
        assert merge.due({5}, deadline - 0.5) == set() and merge.due({4}, deadline) == set()
        assert merge.due({5}, deadline) == {5}
        await merge.handle(5, tick(deadline), deadline)
        late, _ = partition_parts(1000, INTERVAL, 0, 3, {VIM: {"ACTIVE": 1}}, {})
        await merge.handle(5, json.dumps(late[0]).encode(), deadline + 1)
        await merge.handle(5, b"not json", deadline + 1)

    asyncio.run(scenario())
    assert len(written) == 1
    named, fields = fleet_fields(written[0])
    assert named["vmsByStatus"] == {"SHUTOFF": "1"}
    assert fields["partitions"] == "1" and fields["missingPartitions"] == "0,2"


def test_counts_go_with_the_batch_states_and_a_crash_replay_counts_them_once() -> None:
    cloud = SimulatedCloud(seed=7)
    vms = [cloud.new_vm(i) for i in range(3)]
    documents = [raw_record(cloud.action(vm, "create", "end", "legacy"), VIM, cloud.tick()) for vm in vms]
    log = [Message(RAW0, i, vms[i].uuid.encode(), json.dumps(d).encode()) for i, d in enumerate(documents)]

    def runner_with(journal: Journal) -> Any:
        runner, _producer, _offsets = make_runner(journal, reader=FakeReader(log))
        runner.processor = pipeline.Processor(
            pipeline.Topics("events", "dlq"),
            lambda: SUBS,
            600,
            measurement_interval=INTERVAL,
            measurement_grace=GRACE,
        )
        runner.sweeps.fleet = FleetTopic(PARTS, 2, 1)
        return runner

    journal = Journal()
    first = runner_with(journal)
    asyncio.run(first.handle_batch(log[:2]))
    asyncio.run(first.drain())
    assert asyncio.run(first.confirm_states())  # the states in Kafka, the offsets not committed
    record = first.state[flow_key(0)][FLOW]
    (by_vim,) = record["open"].values()
    assert by_vim[VIM]["events_by_kind"] == {"CREATE": 2}
    states = [e for e in journal if e[0] == "write" and e[1] == STATE]
    assert states[-1][2] == flow_key(0)  # after the VMs' states of its batch
    # The worker dies before committing: the next one replays both records and then the third,
    # against the table the first one left.
    second = runner_with(Journal())
    second.state.update(first.state)
    asyncio.run(second.handle_batch(log))
    asyncio.run(second.drain())
    (by_vim,) = second.state[flow_key(0)][FLOW]["open"].values()
    assert by_vim[VIM]["events_by_kind"] == {"CREATE": 3}

    # The interval closed: the partition's part, then a manifest to each fleet-parts partition,
    # then its flow record with the interval sent.
    start = int(next(iter(second.state[flow_key(0)][FLOW]["open"])))
    closing = Journal()
    second.writer = runner_with(closing).writer
    asyncio.run(second.sweeps.close_measurements({RAW0}, start + INTERVAL + GRACE))
    assert asyncio.run(second.confirm_states())
    written = [(e[1], e[2]) for e in closing if e[0] == "write"]
    assert written == [
        (PARTS, VIM.encode()),
        (PARTS, b"manifest"),
        (PARTS, b"manifest"),
        (STATE, flow_key(0)),
    ]
    assert second.state[flow_key(0)][FLOW] == {"open": {}, "through": start}
    # Nothing sent twice.
    asyncio.run(second.sweeps.close_measurements({RAW0}, start + INTERVAL + GRACE + 1))
    assert asyncio.run(second.confirm_states())
    assert len([e for e in closing if e[0] == "write"]) == 4
