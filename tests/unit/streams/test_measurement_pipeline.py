"""Ceilometer samples through the stream stage: counted into the VM's state, closed into VES
measurement events per feed, and the fleet event; every output valid against ONAP's VES schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.simulator.novasim import SimulatedCloud, raw_record
from schemas.raw import raw_document, split_samples
from schemas.state import META
from streams import pipeline, ves_measurement
from streams.fleet import (
    FleetFlow,
    add_to_book,
    complete,
    count_statuses,
    merged_figures,
    partition_parts,
    percentile,
)
from streams.subscriptions import SubscriptionError, load_subscriptions
from tests.unit.streams.test_ves import assert_valid_ves

VIM = "owner_region-m"
T0 = 1_800_000_000
SUBS = load_subscriptions(
    f"""
subscriptions:
  - name: all-measurements
    match: {{vims: ["{VIM}"]}}
    sink: {{type: kafka, topic: m.all, format: ves-measurement}}
  - name: cpu-only
    match: {{meters: [cpu], hosts: [compute-*]}}
    sink: {{type: kafka, topic: m.cpu, format: ves-measurement, ves: {{reporting_entity_name: eventfed-pm}}}}
  - name: other-tenant
    match: {{tenants: [nobody]}}
    sink: {{type: kafka, topic: m.nobody, format: ves-measurement}}
  - name: every-event
    match: {{phases: [start, end, error, none]}}
    sink: {{type: kafka, topic: events.json}}
"""
)


class Harness:
    def __init__(self, subscriptions: Any = SUBS) -> None:
        self.processor = pipeline.Processor(
            pipeline.Topics("events", "dlq"), lambda: subscriptions, 600, measurement_interval=300
        )
        self.state: dict[bytes, dict[str, Any]] = {}
        self.offset = 0

    def feed(self, document: dict[str, Any], now: float = T0 + 100) -> pipeline.Outcome:
        self.offset += 1
        body = json.dumps(document).encode()
        outcome = self.processor.process(
            b"k", body, pipeline.Source("raw", 0, self.offset), self.state.get, now
        )
        if outcome.new_state is not None and outcome.state_key is not None:
            self.state[outcome.state_key] = outcome.new_state
        return outcome

    def close(self, key: bytes, now: float) -> pipeline.Outcome | None:
        outcome = self.processor.close_measurements(key, self.state[key], now)
        if outcome is not None and outcome.new_state is not None:
            self.state[key] = outcome.new_state
        return outcome


def created_vm(h: Harness) -> Any:
    cloud = SimulatedCloud(seed=4)
    vm = cloud.new_vm(0)
    h.feed(raw_record(cloud.action(vm, "create", "end", "legacy"), VIM, cloud.tick()))
    return vm, cloud


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).replace(tzinfo=None).isoformat()


def one_sample(vm: str, meter: str, kind: str, unit: str, volume: float, at: float, mid: str, **meta: Any):
    return {
        "source": "openstack",
        "counter_name": meter,
        "counter_type": kind,
        "counter_unit": unit,
        "counter_volume": volume,
        "user_id": "u",
        "project_id": "tenant-1",
        "resource_id": meta.pop("resource_id", vm),
        "timestamp": iso(at),
        "resource_metadata": {"instance_id": vm, "host": "compute-1", **meta},
        "message_id": mid,
        "monotonic_time": None,
        "message_signature": "",
    }


def usage_samples(vm: str) -> list[dict[str, Any]]:
    nic = f"instance-00000001-{vm}-tap0"
    return [
        one_sample(vm, "cpu", "cumulative", "ns", 10e9, T0 + 10, "c1", vcpus=2),
        one_sample(vm, "cpu", "cumulative", "ns", 70e9, T0 + 70, "c2", vcpus=2),
        one_sample(vm, "vcpus", "gauge", "vcpu", 2, T0 + 10, "v1"),
        one_sample(vm, "memory", "gauge", "MiB", 2048, T0 + 10, "m1"),
        one_sample(vm, "memory.usage", "gauge", "MiB", 512, T0 + 70, "mu1"),
        one_sample(vm, "disk.device.read.bytes", "cumulative", "B", 0, T0 + 10, "d1", resource_id=f"{vm}-vda", disk_name="vda"),
        one_sample(vm, "disk.device.read.bytes", "cumulative", "B", 6000, T0 + 70, "d2", resource_id=f"{vm}-vda", disk_name="vda"),
        one_sample(vm, "network.incoming.bytes", "cumulative", "B", 100, T0 + 10, "n1", resource_id=nic, vnic_name="tap0"),
        one_sample(vm, "network.incoming.bytes", "cumulative", "B", 1300, T0 + 70, "n2", resource_id=nic, vnic_name="tap0"),
        one_sample(vm, "compute.instance.booting.time", "gauge", "sec", 1.5, T0 + 5, "b1"),
    ]  # fmt: skip


def sample_record(payload: Any, event_type: str = "metering") -> dict[str, Any]:
    return raw_document(
        vim_id=VIM,
        received_at=datetime.fromtimestamp(T0 + 100, UTC),
        event_type=event_type,
        publisher_id="telemetry.publisher.ceilo",
        priority="sample",
        payload=payload,
        message_id="envelope-1",
        timestamp=iso(T0 + 100),
    )


def test_samples_are_counted_into_the_vms_state_and_reach_no_event_feed() -> None:
    h = Harness()
    vm, _ = created_vm(h)
    outcome = h.feed(sample_record(usage_samples(vm.uuid)))
    assert outcome.kind == pipeline.METERED and outcome.outputs == []
    assert outcome.counts is not None and outcome.counts["counted"] == 10
    state = h.state[f"{VIM}/{vm.uuid}".encode()]
    assert list(state[META]["metering"]["open"]) == [str(T0)]
    assert state["status"] == "CREATE"  # the VM's state itself is untouched


def test_the_polling_batch_and_its_relay_count_once() -> None:
    h = Harness()
    vm, _ = created_vm(h)
    samples = usage_samples(vm.uuid)
    h.feed(sample_record({"samples": samples}, "telemetry.polling"))
    again = h.feed(sample_record(samples))
    assert again.counts is not None and again.counts.get("duplicate") == 10 and again.new_state is None


def test_closed_interval_gives_one_valid_event_per_feed_with_the_samples_figures() -> None:
    h = Harness()
    vm, _ = created_vm(h)
    h.feed(sample_record(usage_samples(vm.uuid)))
    key = f"{VIM}/{vm.uuid}".encode()
    assert h.close(key, T0 + 300 + 59) is None  # inside the grace period
    outcome = h.close(key, T0 + 360)
    assert outcome is not None and outcome.kind == pipeline.MEASURED
    by_topic = {o.topic: json.loads(o.value or b"") for o in outcome.outputs}
    assert sorted(by_topic) == ["m.all", "m.cpu"]  # the tenant filter excludes m.nobody
    for document in by_topic.values():
        assert_valid_ves(document)
    event = by_topic["m.all"]["event"]
    header, fields = event["commonEventHeader"], event["measurementFields"]
    assert header["domain"] == "measurement" and header["sourceId"] == vm.uuid
    assert header["reportingEntityName"] == VIM
    assert header["sourceName"] == h.state[key]["display_name"]
    assert (header["startEpochMicrosec"], header["lastEpochMicrosec"]) == (T0 * 10**6, (T0 + 300) * 10**6)
    assert fields["measurementInterval"] == 300
    # 60e9 ns of CPU over 60 s on 2 vCPUs: half of them.
    assert fields["cpuUsageArray"] == [{"cpuIdentifier": "all", "percentUsage": 50.0}]
    assert fields["memoryUsageArray"] == [
        {
            "vmIdentifier": vm.uuid,
            "memoryUsed": 512 * 1024,
            "memoryConfigured": 2048 * 1024,
            "memoryFree": 1536 * 1024,
            "percentMemoryUsage": 25.0,
        }
    ]
    assert fields["diskUsageArray"] == [{"diskIdentifier": "vda", "diskOctetsReadAvg": 100.0}]
    assert fields["nicPerformanceArray"] == [
        {
            "nicIdentifier": "tap0",
            "valuesAreSuspect": "false",
            "receivedOctetsAccumulated": 1300,
            "receivedOctetsDelta": 1200,
        }
    ]
    rest = {m["name"]: m["hashMap"] for m in fields["additionalMeasurements"]}
    assert rest["compute.instance.booting.time"]["value"] == "1.5"
    assert set(rest) == {"vcpus", "memory", "compute.instance.booting.time"}
    assert fields["additionalFields"]["samples"] == "10"
    cpu_feed = by_topic["m.cpu"]["event"]
    assert cpu_feed["commonEventHeader"]["reportingEntityName"] == "eventfed-pm"
    assert set(cpu_feed["measurementFields"]) == {
        "measurementInterval",
        "measurementFieldsVersion",
        "cpuUsageArray",
        "additionalFields",
    }
    # Closed once: the state no longer holds it, and a late sample for it is dropped.
    assert h.close(key, T0 + 400) is None
    late = h.feed(sample_record([one_sample(vm.uuid, "cpu", "cumulative", "ns", 80e9, T0 + 200, "late")]))
    assert late.counts is not None and late.counts.get("late") == 1


def test_events_keep_the_open_intervals() -> None:
    h = Harness()
    vm, cloud = created_vm(h)
    h.feed(sample_record(usage_samples(vm.uuid)))
    applied = h.feed(raw_record(cloud.action(vm, "power_off", "end", "legacy"), VIM, cloud.tick()))
    assert applied.kind == pipeline.APPLIED
    outcome = h.close(f"{VIM}/{vm.uuid}".encode(), T0 + 400)
    assert outcome is not None and len(outcome.outputs) == 2


def test_samples_make_an_unknown_vm_known_without_a_status() -> None:
    h = Harness()
    uuid = "5a5a5a5a-0000-4000-8000-000000000000"
    key = f"{VIM}/{uuid}".encode()
    outcome = h.feed(sample_record(usage_samples(uuid)))
    assert outcome.kind == pipeline.METERED and outcome.reason == "new_vm"
    assert outcome.counts is not None and outcome.counts["counted"] == 10
    state = h.state[key]
    assert {k: v for k, v in state.items() if k != META} == {
        "vim_id": VIM, "instance_id": uuid, "tenant_id": "tenant-1", "host": "compute-1"
    }  # fmt: skip
    assert state[META]["source"] == {"topic": "raw", "partition": 0, "offset": 1, "index": 0}
    assert str(T0 // 300 * 300) in state[META]["metering"]["open"]
    # Counted under "UNKNOWN" in the fleet figures: no status is made up.
    assert count_statuses(h.state.values()) == {VIM: {"UNKNOWN": 1}}
    # Its interval closes like any VM's: the figures are there, with the tenant and host.
    closed = h.close(key, T0 + 400)
    assert closed is not None and len(closed.outputs) == 2
    for output in closed.outputs:
        assert_valid_ves(json.loads(output.value))
    # Its first event makes it a VM like any other, keeping what its samples opened.
    h.feed(sample_record([one_sample(uuid, "cpu", "cumulative", "ns", 80e9, T0 + 310, "c3")]))
    cloud = SimulatedCloud(seed=5)
    vm = cloud.new_vm(0)
    vm.uuid = uuid
    applied = h.feed(raw_record(cloud.action(vm, "power_off", "end", "legacy"), VIM, cloud.tick()))
    assert applied.kind == pipeline.APPLIED
    assert applied.new_state is not None and applied.new_state["state"] == "stopped"
    assert str(T0 // 300 * 300 + 300) in applied.new_state[META]["metering"]["open"]


def test_samples_of_an_interval_over_make_no_vm_known() -> None:
    h = Harness()
    outcome = h.feed(sample_record(usage_samples("6b6b6b6b-0000-4000-8000-000000000000")), now=T0 + 400)
    assert outcome.kind == pipeline.METERED and outcome.new_state is None
    assert outcome.counts is not None and outcome.counts["late"] == 10 and h.state == {}


def test_samples_after_a_delete_are_dropped() -> None:
    h = Harness()
    vm, cloud = created_vm(h)
    h.feed(raw_record(cloud.action(vm, "delete", "end", "legacy"), VIM, cloud.tick()))
    deleted_at = h.state[f"{VIM}/{vm.uuid}".encode()]["occurred_at"]
    after = datetime.fromisoformat(deleted_at.replace("Z", "+00:00")).timestamp() + 30
    outcome = h.feed(sample_record([one_sample(vm.uuid, "cpu", "cumulative", "ns", 1, after, "x")]))
    assert outcome.counts is not None and outcome.counts["after_delete"] == 1


def test_malformed_sample_records_are_dead_lettered() -> None:
    h = Harness()
    assert h.feed(sample_record({"not": "a list"})).kind == pipeline.DEAD
    assert h.feed(sample_record([{"counter_name": "cpu"}])).reason == "bad_samples"


def test_without_measurement_feeds_samples_are_ignored() -> None:
    h = Harness(subscriptions=[s for s in SUBS if not s.sink.is_measurement])
    vm, _ = created_vm(h)
    assert h.feed(sample_record(usage_samples(vm.uuid))).kind == pipeline.IGNORED


def test_a_polling_batch_is_split_per_instance_keeping_its_shape() -> None:
    a, b = "aaaaaaaa-0000-4000-8000-000000000000", "bbbbbbbb-0000-4000-8000-000000000000"
    message = {
        "event_type": "telemetry.polling",
        "payload": {"samples": [one_sample(a, "cpu", "cumulative", "ns", 1, T0, "1"),
                                one_sample(b, "cpu", "cumulative", "ns", 1, T0, "2"),
                                one_sample(a, "memory.usage", "gauge", "MiB", 1, T0, "3")]},
    }  # fmt: skip
    split = split_samples(message)
    assert [[s["message_id"] for s in m["payload"]["samples"]] for m in split] == [["1", "3"], ["2"]]
    bare = {"event_type": "metering", "payload": message["payload"]["samples"]}  # type: ignore[index]
    assert [[s["message_id"] for s in m["payload"]] for m in split_samples(bare)] == [["1", "3"], ["2"]]


def test_meters_filter_is_only_for_measurement_feeds_schema() -> None:
    with pytest.raises(SubscriptionError):
        load_subscriptions("subscriptions: [{name: x, sink: {type: kafka, topic: t, format: ves-metrics}}]")


def test_fleet_event_is_valid_and_counts_what_it_was_told() -> None:
    h = Harness()
    created_vm(h)
    flow = FleetFlow(300)
    flow.event(0, VIM, "CREATE", 0.5, False, False, T0 + 1)
    flow.event(1, VIM, "POWER_OFF", 1.5, True, False, T0 + 2)
    flow.event(0, VIM, "POWER_ON", 2.5, False, True, T0 + 3)
    flow.stuck(1, VIM, T0 + 4)
    flow.event(0, VIM, "DELETE", 9.0, False, False, T0 + 301)  # the next interval
    book: dict[str, Any] | None = None
    for partition, statuses in ((0, count_statuses(h.state.values())), (1, {})):
        parts, manifest = partition_parts(T0, 300, partition, 2, statuses, flow.take(partition, T0))
        for record in [*parts, manifest]:
            book = add_to_book(book, record)
    assert book is not None and complete(book)
    figures = merged_figures(book)
    assert len(figures) == 1 and figures[0].partitions == (0, 1) and figures[0].missing_partitions == ()
    outputs = h.processor.fleet_outputs(figures)
    # Feeds narrowed to tenants or hosts get no VIM-wide figures.
    assert [o.topic for o in outputs] == ["m.all"]
    document = json.loads(outputs[0].value or b"")
    assert_valid_ves(document)
    named = {
        m["name"]: m["hashMap"] for m in document["event"]["measurementFields"]["additionalMeasurements"]
    }
    assert named["vmsByStatus"] == {"ACTIVE": "1"}
    assert named["eventsByKind"] == {"CREATE": "1", "POWER_OFF": "1", "POWER_ON": "1"}
    assert named["vmFailures"] == {"raised": "1", "cleared": "1"} and named["stuckActions"] == {"raised": "1"}
    assert named["notificationLagSeconds"] == {"p50": "1.5", "p99": "2.5"}
    assert document["event"]["measurementFields"]["additionalFields"]["partitions"] == "0,1"
    assert document["event"]["commonEventHeader"]["eventId"] == ves_measurement.fleet_event_id(VIM, T0)
    assert flow.take(0, T0) == {} and flow.through(0) == T0


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3, 1, 2], 0.5) == 2
    assert percentile(range(1, 101), 0.99) == 99


def test_memory_usage_without_the_guests_memory_goes_to_additional_measurements() -> None:
    """memoryFree is required by the schema and unknown without the VM's memory: not made up."""
    h = Harness()
    vm, _ = created_vm(h)
    h.feed(sample_record([one_sample(vm.uuid, "memory.usage", "gauge", "MiB", 300, T0 + 5, "mu")]))
    outcome = h.close(f"{VIM}/{vm.uuid}".encode(), T0 + 400)
    assert outcome is not None
    document = json.loads(outcome.outputs[0].value or b"")
    assert_valid_ves(document)
    fields = document["event"]["measurementFields"]
    assert "memoryUsageArray" not in fields
    assert fields["additionalMeasurements"] == [
        {
            "name": "memory.usage",
            "hashMap": {"resourceId": vm.uuid, "type": "gauge", "unit": "MiB", "value": "300"},
        }
    ]
