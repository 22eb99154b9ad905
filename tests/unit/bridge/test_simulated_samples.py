"""The simulator's Ceilometer samples (what `make demo` feeds the measurement feeds): in the shape
Ceilometer's polling agent sends, about the VMs the simulated lifecycles leave alive, and what the
stream worker turns into one VES measurement event per VM per interval."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bridge.simulator.novasim import raw_record
from bridge.simulator.simulate import plan, sample_polls
from schemas.raw import record_key, samples_of
from streams import pipeline
from streams.metering import parse_sample
from streams.subscriptions import load_subscriptions
from tests.unit.streams.test_ves import assert_valid_ves

START = datetime(2026, 12, 7, 10, 0, 1, tzinfo=UTC)
VIM = "demo-owner_region-one"


def alive_after(notes: list) -> set[str]:
    deleted = {
        n.instance_id for n in notes if n.event_type in ("compute.instance.delete.end", "instance.delete.end")
    }
    return {n.instance_id for n in notes} - deleted


def test_polls_are_of_the_vms_the_plan_leaves_alive_in_ceilometers_shape() -> None:
    polls = sample_polls(8, 7, "mixed", 2, 4.0, START)
    assert len(polls) == 2
    assert {n.instance_id for n in polls[0]} == alive_after(plan(8, 7, "mixed")) != set()
    note = polls[1][0]
    assert (note.event_type, note.priority, note.publisher_id) == (
        "telemetry.polling",
        "SAMPLE",
        "ceilometer.polling",
    )
    samples = samples_of(note.event_type, note.payload)
    assert samples is not None
    parsed = [parse_sample(s) for s in samples]
    assert {s.instance_id for s in parsed} == {note.instance_id}
    assert {s.at for s in parsed} == {START.timestamp() + 4.0}
    assert record_key(note.event_type, note.payload, note.publisher_id) == note.instance_id.encode()


def test_the_demo_polls_make_valid_measurement_events() -> None:
    subscriptions = load_subscriptions(
        "subscriptions: [{name: m, sink: {type: kafka, topic: m, format: ves-measurement}}]"
    )
    processor = pipeline.Processor(
        pipeline.Topics("e", "d"), lambda: subscriptions, 600, measurement_interval=10
    )
    state: dict[bytes, dict] = {}
    notes = plan(4, 7, "legacy")
    polls = sample_polls(4, 7, "legacy", 2, 4.0, START)
    documents = [raw_record(n, VIM, START) for n in notes] + [
        raw_record(n, VIM, START) | {"priority": "SAMPLE"} for poll in polls for n in poll
    ]
    for offset, document in enumerate(documents):
        outcome = processor.process(
            b"k",
            json.dumps(document).encode(),
            pipeline.Source("raw", 0, offset),
            state.get,
            START.timestamp(),
        )
        if outcome.new_state is not None and outcome.state_key is not None:
            state[outcome.state_key] = outcome.new_state
    events = []
    for key, value in state.items():
        closed = processor.close_measurements(key, value, START.timestamp() + 120)
        events += [json.loads(o.value or b"") for o in (closed.outputs if closed else [])]
    assert len(events) == len(alive_after(notes))
    for event in events:
        assert_valid_ves(event)
        fields = event["event"]["measurementFields"]
        assert {"cpuUsageArray", "memoryUsageArray", "diskUsageArray", "nicPerformanceArray"} <= set(fields)
