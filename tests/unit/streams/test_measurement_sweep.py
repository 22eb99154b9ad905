"""The worker's interval sweep with the batch runner's fakes: an interval is emitted once, its
measurement events before the state that closes it, and not before the worker has handled what
its partitions held when it took them (a restart after the grace period loses no sample)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any, NamedTuple

from bridge.simulator.novasim import SimulatedCloud, raw_record
from schemas.raw import raw_document
from streams import pipeline
from streams.subscriptions import load_subscriptions
from tests.unit.streams.test_runner import RAW, STATE, FakeReader, Journal, Message, make_runner

VIM = "o_r"
T0 = 1_800_000_000
MEASUREMENTS = "measurements"
SUBS = load_subscriptions(
    f"subscriptions: [{{name: m, sink: {{type: kafka, topic: {MEASUREMENTS}, format: ves-measurement}}}}]"
)


class TP(NamedTuple):
    topic: str
    partition: int


PARTITION = TP(RAW, 0)


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).replace(tzinfo=None).isoformat()


def messages() -> tuple[str, list[Message]]:
    cloud = SimulatedCloud(seed=5)
    vm = cloud.new_vm(0)
    create = raw_record(cloud.action(vm, "create", "end", "legacy"), VIM, cloud.tick())

    def cpu(volume: float, at: float, mid: str) -> dict[str, Any]:
        sample = {"counter_name": "cpu", "counter_type": "cumulative", "counter_unit": "ns",
                  "counter_volume": volume, "resource_id": vm.uuid, "timestamp": iso(at), "message_id": mid,
                  "resource_metadata": {"instance_id": vm.uuid, "vcpus": 1}}  # fmt: skip
        return raw_document(
            vim_id=VIM,
            received_at=datetime.fromtimestamp(at, UTC),
            event_type="metering",
            publisher_id="telemetry.publisher.h",
            priority="sample",
            payload=[sample],
            message_id=mid,
            timestamp=iso(at),
        )

    documents = [create, cpu(1e9, T0 + 1, "s1"), cpu(3e9, T0 + 5, "s2")]
    key = vm.uuid.encode()
    return vm.uuid, [Message(PARTITION, i, key, json.dumps(d).encode()) for i, d in enumerate(documents)]


def runner_over(log: list[Message], journal: Journal, committed: int = 0) -> Any:
    runner, _producer, offsets = make_runner(journal, reader=FakeReader(log))
    runner.processor = pipeline.Processor(
        pipeline.Topics("events", "dlq"), lambda: SUBS, 600, measurement_interval=10, measurement_grace=2
    )
    offsets.committed[PARTITION] = committed
    return runner


def writes(journal: Journal, topic: str) -> int:
    """VM measurement events written (fleet events are keyed by the VIM)."""
    return sum(
        1 for entry in journal if entry[0] == "write" and entry[1] == topic and entry[2] != VIM.encode()
    )


def test_an_interval_is_emitted_once_events_before_the_state() -> None:
    _, log = messages()
    journal = Journal()
    runner = runner_over(log, journal)
    closing = T0 + 10 + 2

    async def scenario() -> None:
        # Nothing handled yet: the sweep waits for the records the partition holds.
        assert await runner.sweeps.close_measurements({PARTITION}, closing) == 0
        await runner.handle_batch(log)
        await runner.drain()
        assert await runner.sweeps.close_measurements({PARTITION}, closing - 1) == 0  # grace
        assert await runner.sweeps.close_measurements({PARTITION}, closing) == 1
        assert await runner.sweeps.close_measurements({PARTITION}, closing + 30) == 0
        assert await runner.confirm_states()

    asyncio.run(scenario())
    assert writes(journal, MEASUREMENTS) == 1
    last_measurement = max(
        i for i, e in enumerate(journal) if e[0] == "write" and e[1] == MEASUREMENTS and e[2] != VIM.encode()
    )
    assert journal[last_measurement + 1][:2] == ("write", STATE)


def test_a_worker_taking_over_after_the_grace_period_counts_the_waiting_samples_first() -> None:
    instance, log = messages()
    first = runner_over(log, Journal())
    asyncio.run(first.handle_batch(log[:2]))  # the create and the first sample, then it dies
    asyncio.run(first.drain())
    journal = Journal()
    second = runner_over(log, journal, committed=2)
    second.state.update(first.state)  # the table, recovered from the state topic
    late = T0 + 60

    async def scenario() -> None:
        assert await second.sweeps.close_measurements({PARTITION}, late) == 0
        await second.fill_stalled_partitions({PARTITION}, late)  # learns where the partition starts
        assert await second.sweeps.close_measurements({PARTITION}, late) == 0  # record 2 waits
        await second.handle_batch(log[2:])
        await second.drain()
        assert await second.sweeps.close_measurements({PARTITION}, late) == 1

    asyncio.run(scenario())
    events = [e for e in journal if e[0] == "write" and e[1] == MEASUREMENTS and e[2] != VIM.encode()]
    assert len(events) == 1 and events[0][2] == instance.encode()
    # Both readings counted: a rate over them, not a single reading.
    state = second.state[f"{VIM}/{instance}".encode()]
    assert state["eventfed"]["metering"]["carry"][f"cpu|{instance}"] == [T0 + 5, 3e9]
