"""The fleet figures across stream workers, against the real Kafka: each raw partition's share goes
to the fleet-parts topic and one Faust agent merges them into one fleet event per VIM per
interval, also with two workers on one raw topic and across a worker SIGKILLed mid-interval (its
flow counts are in the state topic); a VM whose first message is a Ceilometer sample is known
from it, without a status."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.simulator.novasim import SimulatedCloud, raw_record
from schemas.raw import raw_document
from streams.metering import interval_start
from tests.support.stream import StreamRun
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

VIMS = ("fleetown_one", "fleetown_two")
INTERVAL = 6
GRACE = 1.5
FLEET_EVENT = "Measurement_eventfed_VimFleet"
VM_EVENT = "Measurement_eventfed_VmUsage"
SUBSCRIPTIONS = """
subscriptions:
  - name: measurements
    sink: {type: kafka, topic: "test.fleet.pm.{u}", format: ves-measurement}
"""
TIMING = {
    "EVENTFED_MEASUREMENT_INTERVAL_SECONDS": str(INTERVAL),
    "EVENTFED_MEASUREMENT_GRACE_SECONDS": str(GRACE),
    "EVENTFED_MEASUREMENT_CHECK_SECONDS": "0.5",
}


def creates(cloud: SimulatedCloud, per_vim: int) -> list[tuple[str, dict[str, Any]]]:
    records = []
    for vim_id in VIMS:
        for i in range(per_vim):
            vm = cloud.new_vm(i)
            records.append(
                (vm.uuid, raw_record(cloud.action(vm, "create", "end", "legacy"), vim_id, cloud.tick()))
            )
    return records


def sample_only(vim_id: str, instance_id: str, at: float) -> dict[str, Any]:
    sample = {
        "counter_name": "memory.usage", "counter_type": "gauge", "counter_unit": "MB", "counter_volume": 300,
        "resource_id": instance_id, "project_id": "tenant-s", "timestamp": datetime.fromtimestamp(at, UTC).isoformat(),
        "message_id": f"s-{instance_id}", "resource_metadata": {"instance_id": instance_id, "host": "compute-s"},
    }  # fmt: skip
    return raw_document(
        vim_id=vim_id,
        received_at=datetime.fromtimestamp(at, UTC),
        event_type="metering",
        publisher_id="telemetry.publisher.s",
        priority="sample",
        payload=[sample],
        message_id=f"e-{instance_id}",
        timestamp=datetime.fromtimestamp(at, UTC).isoformat(),
    )


def fleet_events(run: StreamRun, topic: str, until: Any) -> list[dict[str, Any]]:
    records = run.read(
        topic, timeout=90, idle=0.5, until=lambda rs: until(_fleet([json.loads(r.value()) for r in rs]))
    )
    return _fleet([json.loads(r.value()) for r in records])


def _fleet(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"]["commonEventHeader"]["eventName"] == FLEET_EVENT]


def figures(event: dict[str, Any]) -> tuple[str, int, dict[str, Any], dict[str, Any]]:
    header, fields = event["event"]["commonEventHeader"], event["event"]["measurementFields"]
    named = {m["name"]: m["hashMap"] for m in fields["additionalMeasurements"]}
    return header["sourceName"], header["startEpochMicrosec"] // 10**6, named, fields["additionalFields"]


def events_total(events: list[dict[str, Any]], vim_id: str) -> int:
    return sum(
        int(n) for e in events if figures(e)[0] == vim_id for n in figures(e)[2]["eventsByKind"].values()
    )


def wait_for_interval_start(margin: float = 0.3) -> int:
    """Sleeps to just after the next interval boundary; that interval's start."""
    start = interval_start(time.time(), INTERVAL) + INTERVAL
    time.sleep(max(0.0, start + margin - time.time()))
    return start


def test_two_workers_send_one_fleet_event_per_vim_per_interval(tmp_path, unique, kafka_bootstrap) -> None:
    run = StreamRun(tmp_path, unique, kafka_bootstrap, SUBSCRIPTIONS)
    topic = f"test.fleet.pm.{unique}"
    try:
        run.start("w1", **TIMING)
        run.start("w2", **TIMING)
        time.sleep(3)  # the second worker's rebalance settles
        start = wait_for_interval_start()
        records = creates(SimulatedCloud(seed=26), per_vim=12)
        stranger = "5a5a5a5a-0000-4000-8000-00000000f1ee"
        records.append((stranger, sample_only(VIMS[0], stranger, time.time())))
        run.send(records)
        expected = len(records) - 1

        def counted(events: list[dict[str, Any]]) -> bool:
            late = [e for e in events if figures(e)[1] >= start]
            return sum(events_total(late, v) for v in VIMS) >= expected and any(
                figures(e)[2]["vmsByStatus"].get("UNKNOWN") for e in late
            )

        events = fleet_events(run, topic, counted)
        time.sleep(INTERVAL)  # a further interval: no second event for one already sent
        events = fleet_events(run, topic, lambda es: len(es) >= len(events))
        by_interval = Counter((figures(e)[0], figures(e)[1]) for e in events)
        assert [k for k, n in by_interval.items() if n > 1] == [], by_interval
        mine = [e for e in events if figures(e)[1] >= start]
        assert {v: events_total(mine, v) for v in VIMS} == {VIMS[0]: 12, VIMS[1]: 12}
        last = {figures(e)[0]: figures(e) for e in sorted(mine, key=lambda e: figures(e)[1])}
        # The VMs of both workers' partitions in one event; the sample-only VM under UNKNOWN.
        assert last[VIMS[0]][2]["vmsByStatus"] == {"ACTIVE": "12", "UNKNOWN": "1"}
        assert last[VIMS[1]][2]["vmsByStatus"] == {"ACTIVE": "12"}
        for _, _, _, fields in last.values():
            assert fields["partitions"] and "missingPartitions" not in fields
        # The sample-only VM: its measurement event; known, its tenant and host from the sample,
        # no status made up.
        everything = [json.loads(r.value())["event"] for r in run.read(topic, timeout=30, idle=0.5)]
        (vm_event,) = [e for e in everything if e["commonEventHeader"]["eventName"] == VM_EVENT]
        assert vm_event["commonEventHeader"]["sourceId"] == stranger
        assert vm_event["measurementFields"]["additionalFields"]["tenantId"] == "tenant-s"
        state = run.latest_state(timeout=30, idle=1)[f"{VIMS[0]}/{stranger}"]
        assert state is not None and "state" not in state and "status" not in state
        assert (state["tenant_id"], state["host"]) == ("tenant-s", "compute-s")
    finally:
        run.stop_all()


def test_a_worker_killed_mid_interval_loses_no_count_and_the_interval_goes_once(
    tmp_path, unique, kafka_bootstrap
) -> None:
    run = StreamRun(tmp_path, unique, kafka_bootstrap, SUBSCRIPTIONS)
    topic = f"test.fleet.pm.{unique}"
    try:
        first = run.start("w1", **TIMING)
        start = wait_for_interval_start()
        records = creates(SimulatedCloud(seed=27), per_vim=10)
        run.send(records)

        def flow_counted() -> bool:
            state = run.latest_state(timeout=10, idle=0.3)
            counts = [
                n
                for key, value in state.items()
                if key.startswith("#fleet-flow/") and value
                for by_vim in value["fleet_flow"]["open"].values()
                for flow in by_vim.values()
                for n in flow["events_by_kind"].values()
            ]
            return sum(counts) == len(records)

        wait_until(flow_counted, INTERVAL - 1, "the interval's counts in the state topic")
        assert time.time() < start + INTERVAL, "the worker must be killed inside the interval"
        first.kill()
        run.start("w2", **TIMING)

        def sent(events: list[dict[str, Any]]) -> bool:
            return sum(events_total([e for e in events if figures(e)[1] == start], v) for v in VIMS) >= len(
                records
            )

        events = fleet_events(run, topic, sent)
        time.sleep(GRACE * 2)
        events = fleet_events(run, topic, lambda es: len(es) >= len(events))
        of_start = [e for e in events if figures(e)[1] == start]
        assert sorted(figures(e)[0] for e in of_start) == sorted(VIMS)
        assert {v: events_total(of_start, v) for v in VIMS} == {VIMS[0]: 10, VIMS[1]: 10}
        assert all("missingPartitions" not in figures(e)[3] for e in of_start)
    finally:
        run.stop_all()
