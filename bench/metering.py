"""Metering: what Ceilometer's samples cost the stream worker, and closing an interval of 10,000 VMs
(1,000 in a quick run).

In this process, through the worker's own decision code (streams.pipeline.Processor, the same
calls the batch runner and its sweep make), without Kafka: Kafka's share of a record is the same
for a sample record as for a notification, and the stream section measures it. Per VM: a legacy
`compute.instance.create.end` (the baseline: the cost of one notification, in the same run), then
two polls of Ceilometer's compute pollsters in one interval, as the polling agent sends them
(`telemetry.polling`, one record per VM as the listener splits them), and the same samples again as
the notification agent relays them (`metering`, all duplicates). Then one sweep closes the
interval on every VM (a VES measurement event per VM per feed, encoded) and the fleet figures are
made from the whole table.

Accounting: every VM's interval gives one event per feed, and every relayed sample is a duplicate.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from bench.context import AccountingError, Context
from bridge.simulator.novasim import SimulatedCloud, raw_record
from schemas.raw import raw_document
from streams import pipeline
from streams.fleet import count_statuses, fleet_figures
from streams.subscriptions import load_subscriptions

VIM_ID = "benchowner_bench-metering"
INTERVAL = 300
SUBSCRIPTIONS = load_subscriptions(
    """
subscriptions:
  - name: measurements
    sink: {type: kafka, topic: bench.measurements, format: ves-measurement}
  - name: deletes
    match: {events: [DELETE]}
    sink: {type: kafka, topic: bench.deletes, format: json}
"""
)
# A compute node's pollsters for one VM: (meter, type, unit, resource suffix, per-poll increase).
POLLED = (
    ("cpu", "cumulative", "ns", "", 30e9),
    ("memory.usage", "gauge", "MiB", "", 0),
    ("memory.available", "gauge", "MiB", "", 0),
    ("disk.device.read.bytes", "cumulative", "B", "-vda", 4e6),
    ("disk.device.write.bytes", "cumulative", "B", "-vda", 2e6),
    ("disk.device.read.requests", "cumulative", "request", "-vda", 400),
    ("disk.device.write.requests", "cumulative", "request", "-vda", 200),
    ("network.incoming.bytes", "cumulative", "B", "-tap0", 1e6),
    ("network.outgoing.bytes", "cumulative", "B", "-tap0", 5e5),
    ("network.incoming.packets", "cumulative", "packet", "-tap0", 900),
)


def _samples(vm: str, poll: int, at: float) -> list[dict[str, Any]]:
    stamp = datetime.fromtimestamp(at, UTC).replace(tzinfo=None).isoformat()
    samples = []
    for meter, kind, unit, suffix, step in POLLED:
        volume = 1024 if meter.startswith("memory") else step * (poll + 1)
        samples.append(
            {
                "source": "openstack",
                "counter_name": meter,
                "counter_type": kind,
                "counter_unit": unit,
                "counter_volume": volume,
                "user_id": "u",
                "project_id": "bench-project",
                "resource_id": vm + suffix,
                "timestamp": stamp,
                "resource_metadata": {
                    "instance_id": vm,
                    "host": "compute-1",
                    "vcpus": 2,
                    "memory_mb": 2048,
                    "disk_name": "vda",
                    "vnic_name": "tap0",
                },
                "message_id": str(uuid.uuid1()),
                "monotonic_time": None,
                "message_signature": "",
            }
        )
    return samples


def _record(event_type: str, payload: Any, at: float) -> bytes:
    document = raw_document(
        vim_id=VIM_ID,
        received_at=datetime.fromtimestamp(at, UTC),
        event_type=event_type,
        publisher_id="ceilometer.polling",
        priority="sample",
        payload=payload,
        message_id=str(uuid.uuid4()),
        timestamp=datetime.fromtimestamp(at, UTC).isoformat(),
    )
    return json.dumps(document).encode()


def run(ctx: Context) -> dict[str, Any]:
    vms = 1_000 if ctx.quick else 10_000
    topics = pipeline.Topics("bench.events", "bench.dlq")
    processor = pipeline.Processor(topics, lambda: SUBSCRIPTIONS, 600, measurement_interval=INTERVAL)
    state: dict[bytes, dict[str, Any]] = {}
    offset = 0

    def feed(values: list[bytes], now: float) -> tuple[float, list[pipeline.Outcome]]:
        nonlocal offset
        outcomes = []
        started = time.process_time()
        for value in values:
            offset += 1
            outcome = processor.process(b"k", value, pipeline.Source("raw", 0, offset), state.get, now)
            if outcome.new_state is not None and outcome.state_key is not None:
                state[outcome.state_key] = outcome.new_state
            outcomes.append(outcome)
        return time.process_time() - started, outcomes

    cloud = SimulatedCloud(seed=26)
    machines = [cloud.new_vm(0) for _ in range(vms)]
    creates = [
        json.dumps(raw_record(cloud.action(vm, "create", "end", "legacy"), VIM_ID, cloud.tick())).encode()
        for vm in machines
    ]
    start = (int(time.time()) // INTERVAL - 2) * INTERVAL
    polls = [[_samples(vm.uuid, poll, start + 30 + 120 * poll) for vm in machines] for poll in (0, 1)]
    polled = [_record("telemetry.polling", {"samples": s}, start + 31) for batch in polls for s in batch]
    relayed = [_record("metering", s, start + 32) for batch in polls for s in batch]
    now = start + 60

    baseline_cpu, _ = feed(creates, now)
    polled_cpu, polled_outcomes = feed(polled, now)
    relayed_cpu, relayed_outcomes = feed(relayed, now)
    samples = sum(len(batch) for poll in polls for batch in poll)
    counted = sum((o.counts or {}).get("counted", 0) for o in polled_outcomes)
    duplicates = sum((o.counts or {}).get("duplicate", 0) for o in relayed_outcomes)
    if counted != samples or duplicates != samples:
        raise AccountingError(f"{samples} samples: {counted} counted, {duplicates} relayed duplicates")

    close_at = start + INTERVAL + 60
    started_wall, started_cpu = time.monotonic(), time.process_time()
    events = 0
    for key, value in list(state.items()):
        outcome = processor.close_measurements(key, value, close_at)
        if outcome is not None and outcome.new_state is not None:
            state[key] = outcome.new_state
            events += len(outcome.outputs)
    close_wall, close_cpu = time.monotonic() - started_wall, time.process_time() - started_cpu
    if events != vms:
        raise AccountingError(f"{vms} VMs closed an interval, {events} measurement events")
    fleet_started = time.process_time()
    # Every record came from raw partition 0: its flow is the VIM's.
    flows = processor.fleet_flow.take(0, start)
    figures = fleet_figures(start, INTERVAL, count_statuses(state.values()), flows)
    fleet_outputs = processor.fleet_outputs(figures)
    fleet_cpu = time.process_time() - fleet_started
    state_bytes = sum(len(json.dumps(v)) for v in state.values()) / vms
    per_notification = baseline_cpu / vms
    per_sample = polled_cpu / samples
    return {
        "vms": vms,
        "samples": samples,
        "samples_per_record": len(POLLED),
        "notification_cpu_us": per_notification * 1e6,
        "sample_cpu_us": per_sample * 1e6,
        "sample_record_cpu_us": polled_cpu / len(polled) * 1e6,
        "duplicate_sample_cpu_us": relayed_cpu / samples * 1e6,
        "sample_to_notification_ratio": per_sample / per_notification,
        "sample_record_to_notification_ratio": (polled_cpu / len(polled)) / per_notification,
        "close_seconds": close_wall,
        "close_cpu_seconds": close_cpu,
        "close_cpu_us_per_vm": close_cpu / vms * 1e6,
        "measurement_events": events,
        "fleet_cpu_seconds": fleet_cpu,
        "fleet_events": len(fleet_outputs),
        "state_bytes_per_vm_after_close": state_bytes,
    }
