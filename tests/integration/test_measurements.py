"""Metrics federation end to end, with real services only: real Nova 34 (legacy notifications) and
the real Ceilometer 27 notification agent on one RabbitMQ vhost, polled-meter samples sent by
Ceilometer's own sample and notifier code, `eventfed listen` taking Nova's notifications and
Ceilometer's samples, `eventfed stream` with 10-second intervals, and Kafka.

What is checked, against what Ceilometer really published (a capture queue of the test's own on
its exchange) and what the events topic says:
- every (VM, interval) with samples gives exactly one VES measurement event per feed, valid
  against ONAP's schema, its gauges the last value Ceilometer published in the interval, its CPU,
  memory, disk and NIC figures the rates and differences of the published readings;
- a polled sample, which reaches the bus twice (telemetry.polling, then relayed as metering), is
  counted once;
- the worker killed (SIGKILL) in the middle of an interval: the interval is emitted once, by the
  next worker, with the samples both workers saw;
- the fleet event per interval: its events by kind add up to the events topic's, its VMs by
  status are the VMs' last states; the same figures on the worker's Prometheus endpoint.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streams.metering import epoch_seconds, interval_start
from tests.support.kafka import headers_of, read_topic
from tests.support.processes import Proc
from tests.support.real_ceilometer import SampleCapture, publish_samples, running_agent
from tests.support.real_nova import RabbitVhost, RealNova, VimListener
from tests.support.stream import StreamRun
from tests.support.waiting import wait_until
from tests.unit.streams.test_ves import assert_valid_ves

pytestmark = [pytest.mark.integration, pytest.mark.real_nova]

INTERVAL = 10
GRACE = 6.0
VM_EVENT = "Measurement_eventfed_VmUsage"
FLEET_EVENT = "Measurement_eventfed_VimFleet"
SUBSCRIPTIONS = """
subscriptions:
  - name: measurements
    sink: {type: kafka, topic: "test.pm.all.{u}", format: ves-measurement}
  - name: cpu-only
    match: {meters: [cpu]}
    sink: {type: kafka, topic: "test.pm.cpu.{u}", format: ves-measurement}
  - name: events
    sink: {type: kafka, topic: "test.pm.events.{u}", format: json}
"""


def iso(at: float) -> str:
    # Polled samples carry naive UTC timestamps (ceilometer.polling.manager).
    return datetime.fromtimestamp(at, UTC).replace(tzinfo=None).isoformat()


def readings(server: str, at: float, cpu_ns: int, rx_bytes: int, read_bytes: int) -> list[dict[str, Any]]:
    """One poll of one VM, as the compute pollsters would report it (ceilometer/compute/pollsters)."""
    common = {"project_id": "test-project", "user_id": "admin", "timestamp": iso(at)}
    metadata = {"instance_id": server, "host": "compute", "vcpus": 1}
    return [
        {**common, "name": "cpu", "type": "cumulative", "unit": "ns", "volume": cpu_ns,
         "resource_id": server, "resource_metadata": {**metadata, "cpu_number": 1}},
        {**common, "name": "network.incoming.bytes", "type": "cumulative", "unit": "B", "volume": rx_bytes,
         "resource_id": f"instance-00000001-{server}-tap0", "resource_metadata": {**metadata, "vnic_name": "tap0"}},
        {**common, "name": "disk.device.read.bytes", "type": "cumulative", "unit": "B", "volume": read_bytes,
         "resource_id": f"{server}-vda", "resource_metadata": {**metadata, "disk_name": "vda"}},
    ]  # fmt: skip


def memory_reading(server: str, at: float, used_mib: int) -> list[dict[str, Any]]:
    return [
        {"project_id": "test-project", "user_id": "admin", "timestamp": iso(at), "name": "memory.usage",
         "type": "gauge", "unit": "MiB", "volume": used_mib, "resource_id": server,
         "resource_metadata": {"instance_id": server, "host": "compute", "vcpus": 1, "memory_mb": 512}},
    ]  # fmt: skip


def measurement_events(bootstrap: str, topic: str, vim_id: str, until: Any = None) -> list[dict[str, Any]]:
    records = read_topic(bootstrap, topic, timeout=60, idle=1.5, until=until)
    return [json.loads(r.value()) for r in records if headers_of(r).get("vim_id") == vim_id.encode()]


def by_name(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"]["commonEventHeader"]["eventName"] == name]


def expected_gauges(samples: list[dict[str, Any]]) -> dict[tuple[str, int, str], float]:
    """(instance, interval start, meter) -> the gauge's last value by sample time, from what
    Ceilometer published."""
    latest: dict[tuple[str, int, str], tuple[float, float]] = {}
    for sample in samples:
        if sample["counter_type"] != "gauge":
            continue
        at = epoch_seconds(sample["timestamp"])
        key = (sample["resource_id"], interval_start(at, INTERVAL), sample["counter_name"])
        if key not in latest or at >= latest[key][0]:
            latest[key] = (at, sample["counter_volume"])
    return {key: value for key, (_, value) in latest.items()}


def test_vm_and_fleet_measurements_from_real_nova_and_ceilometer(
    tmp_path: Path, kafka_bootstrap: str, rabbit_url: str
) -> None:
    unique = uuid.uuid4().hex[:10]
    vim_id = "realceilo_pm"
    all_topic, cpu_topic = f"test.pm.all.{unique}", f"test.pm.cpu.{unique}"
    timing = {
        "EVENTFED_MEASUREMENT_INTERVAL_SECONDS": str(INTERVAL),
        "EVENTFED_MEASUREMENT_GRACE_SECONDS": str(GRACE),
        "EVENTFED_MEASUREMENT_CHECK_SECONDS": "0.5",
    }
    run = StreamRun(tmp_path, unique, kafka_bootstrap, SUBSCRIPTIONS)
    vhost_name = f"eventfed-pm-{unique}"
    try:
        first = run.start("w1", **timing)
        with RabbitVhost(vhost_name) as vhost:
            capture = SampleCapture(f"amqp://guest:guest@127.0.0.1:5672/{vhost_name}", f"capture-{unique}")
            listener = VimListener(
                tmp_path / "listener.log",
                vhost,
                vim_id,
                f"eventfed-pm-{unique}",
                run,
                EVENTFED_SAMPLE_TOPICS="metering,notifications",
            )
            nova = RealNova(tmp_path / "nova.log", vhost.url, "unversioned")
            try:
                with running_agent(tmp_path, vhost.url) as (ceilometer_conf, agent):
                    listener.wait_listening()
                    nova.start()
                    check_everything(
                        run, first, nova, ceilometer_conf, capture, vim_id, all_topic, cpu_topic, timing
                    )
                    assert agent.popen is not None and agent.popen.poll() is None, agent.log()[-3000:]
            finally:
                listener.stop_beside(nova)
                capture.close()
    finally:
        run.stop_all()


def check_everything(
    run: StreamRun,
    first: Proc,
    nova: RealNova,
    ceilometer_conf: Path,
    capture: SampleCapture,
    vim_id: str,
    all_topic: str,
    cpu_topic: str,
    timing: dict[str, str],
) -> None:
    bootstrap = run.bootstrap
    client = nova.client
    running = str(client.create_server("pm-running")["id"])
    stopped = str(client.create_server("pm-stopped")["id"])
    client.action(stopped, {"os-stop": None}, "SHUTOFF")
    client.action(running, {"os-stop": None}, "SHUTOFF")
    client.action(running, {"os-start": None}, "ACTIVE")
    servers = {running, stopped}
    # create 2 + 2, stop 2 + 2 + 2, start 2 (legacy: .start and .end each).
    events = read_topic(bootstrap, run.events_topic, expected=10, timeout=90, idle=1)
    assert len(events) == 10
    from streams import codecs

    on_topic = Counter(codecs.decode(r.value(), "avro")["status"] for r in events)

    # Fleet: the lifecycle's events by kind, once the intervals they fell in have closed.
    def fleet_totals(records: list[Any]) -> Counter[str]:
        totals: Counter[str] = Counter()
        for event in by_name([json.loads(r.value()) for r in records], FLEET_EVENT):
            named = {
                m["name"]: m["hashMap"] for m in event["event"]["measurementFields"]["additionalMeasurements"]
            }
            totals.update({kind: int(n) for kind, n in named["eventsByKind"].items()})
        return totals

    fleet_records = read_topic(
        bootstrap, all_topic, timeout=60, idle=0.5, until=lambda records: fleet_totals(records) == on_topic
    )
    assert fleet_totals(fleet_records) == on_topic
    fleet = by_name([json.loads(r.value()) for r in fleet_records], FLEET_EVENT)
    for event in fleet:
        assert_valid_ves(event)
        assert event["event"]["commonEventHeader"]["reportingEntityName"] == vim_id
    lags = [
        m["hashMap"]
        for e in fleet
        for m in e["event"]["measurementFields"]["additionalMeasurements"]
        if m["name"] == "notificationLagSeconds"
    ]
    assert lags and all(0 <= float(lag["p50"]) <= float(lag["p99"]) < 30 for lag in lags)

    # --- the polling phase: one interval of readings, the worker killed in its middle ---
    # The readings carry their poll times (as Ceilometer's do); the first ones are sent ahead, so
    # that they are counted in the VMs' state well inside the interval.
    start = interval_start(time.time() + 6, INTERVAL) + INTERVAL
    t1, t2 = start + 0.5, start + 4.0
    sent = publish_samples(
        ceilometer_conf, [r for s in sorted(servers) for r in readings(s, t1, 10_000_000_000, 100, 0)]
    )
    sent += publish_samples(
        ceilometer_conf, [r for s in sorted(servers) for r in memory_reading(s, t1, 100)], path="publisher"
    )

    def counted_in_state() -> bool:
        state = run.latest_state(timeout=10, idle=0.5)
        return all(
            str(start)
            in ((state.get(f"{vim_id}/{s}") or {}).get("eventfed", {}).get("metering", {}).get("open") or {})
            for s in servers
        )

    wait_until(counted_in_state, 45, "the first readings counted in the VMs' state")
    time.sleep(max(0.0, start + 1 - time.time()))
    assert time.time() < start + INTERVAL, "the worker must be killed inside the interval"
    first.kill()
    first.popen.wait(10)
    # The second readings reach the raw topic while no worker runs; the next one counts them.
    sent += publish_samples(
        ceilometer_conf,
        [
            r
            for s in sorted(servers)
            for r in [*readings(s, t2, 12_000_000_000, 1_100, 7_000), *memory_reading(s, t2, 300)]
        ],
    )
    second = run.start("w2", **timing)
    closed_by = start + INTERVAL + GRACE

    def interval_out(records: list[Any]) -> bool:
        mine = [json.loads(r.value()) for r in records if headers_of(r).get("vim_id") == vim_id.encode()]
        heads = [e["event"]["commonEventHeader"] for e in mine]
        return (
            sum(h["eventName"] == VM_EVENT and h["startEpochMicrosec"] == start * 10**6 for h in heads) >= 2
        )

    wait_until(lambda: time.time() > closed_by + 1, 60, "the interval's end and grace period")
    everything = measurement_events(bootstrap, all_topic, vim_id, until=interval_out)
    published = capture.drain(quiet=1.5)
    assert len(sent) == 4 * len(servers) * 2 and len(set(sent)) == len(sent)

    # Every output valid VES, every eventId once (no interval emitted twice, across the kill).
    for event in everything:
        assert_valid_ves(event)
    ids = Counter(e["event"]["commonEventHeader"]["eventId"] for e in everything)
    assert [i for i, n in ids.items() if n > 1] == []

    vm_events = by_name(everything, VM_EVENT)
    by_vm_interval = {
        (
            e["event"]["commonEventHeader"]["sourceId"],
            e["event"]["commonEventHeader"]["startEpochMicrosec"] // 10**6,
        ): e
        for e in vm_events
    }
    # One event per VM per interval that had samples, no other; samples of both paths counted once.
    had_samples = {
        (
            s["resource_metadata"].get("instance_id") or s["resource_id"],
            interval_start(epoch_seconds(s["timestamp"]), INTERVAL),
        )
        for s in published
    }
    assert {k for k in had_samples if k[0] in servers} == set(by_vm_interval)
    for (server, at), event in by_vm_interval.items():
        count = sum(
            1
            for s in published
            if (s["resource_metadata"].get("instance_id") or s["resource_id"]) == server
            and interval_start(epoch_seconds(s["timestamp"]), INTERVAL) == at
        )
        assert event["event"]["measurementFields"]["additionalFields"]["samples"] == str(count)

    # Gauges from Nova's notifications (memory, vcpus, disk sizes, booting time): the last published.
    for (server, at, meter), value in expected_gauges(published).items():
        if meter == "memory.usage":
            continue
        fields = by_vm_interval[(server, at)]["event"]["measurementFields"]
        carried = {m["name"]: m["hashMap"] for m in fields.get("additionalMeasurements", [])}
        assert float(carried[meter]["value"]) == pytest.approx(value), (server, at, meter)

    # The polled interval, across the kill: rates over the published readings' times.
    for server in servers:
        fields = by_vm_interval[(server, start)]["event"]["measurementFields"]
        seconds = t2 - t1
        assert fields["cpuUsageArray"][0]["percentUsage"] == pytest.approx(
            2e9 / seconds / 1e9 * 100, rel=1e-4
        )
        # memory.usage against the flavour's memory_mb the pollster's metadata carries.
        assert fields["memoryUsageArray"] == [
            {
                "vmIdentifier": server,
                "memoryUsed": 300 * 1024,
                "memoryConfigured": 512 * 1024,
                "memoryFree": 212 * 1024,
                "percentMemoryUsage": pytest.approx(300 / 512 * 100),
            }
        ]
        assert fields["nicPerformanceArray"] == [
            {"nicIdentifier": "tap0", "valuesAreSuspect": "false",
             "receivedOctetsAccumulated": 1_100, "receivedOctetsDelta": 1_000}
        ]  # fmt: skip
        assert fields["diskUsageArray"] == [
            {"diskIdentifier": "vda", "diskOctetsReadAvg": pytest.approx(7_000 / seconds, rel=1e-4)}
        ]
    # The cpu-only feed: the polled interval's CPU and nothing else.
    cpu_only = by_name(measurement_events(bootstrap, cpu_topic, vim_id), VM_EVENT)
    assert {e["event"]["commonEventHeader"]["sourceId"] for e in cpu_only} == servers
    for event in cpu_only:
        assert_valid_ves(event)
        assert set(event["event"]["measurementFields"]) == {
            "measurementInterval", "measurementFieldsVersion", "cpuUsageArray", "additionalFields"
        }  # fmt: skip

    # Fleet, after the kill: VMs by status from the recovered state; no fleet interval twice.
    fleet = by_name(everything, FLEET_EVENT)
    last = max(fleet, key=lambda e: e["event"]["commonEventHeader"]["startEpochMicrosec"])
    named = {m["name"]: m["hashMap"] for m in last["event"]["measurementFields"]["additionalMeasurements"]}
    assert last["event"]["commonEventHeader"]["startEpochMicrosec"] >= start * 10**6
    assert named["vmsByStatus"] == {"ACTIVE": "1", "SHUTOFF": "1"}
    # The same figures on the worker's Prometheus endpoint (the second worker's own).
    port = second.metrics_port  # type: ignore[attr-defined]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    fleet_lines = {line for line in text.splitlines() if line.startswith("eventfed_fleet_vms{")}
    assert {
        f'eventfed_fleet_vms{{status="ACTIVE",vim="{vim_id}"}} 1.0',
        f'eventfed_fleet_vms{{status="SHUTOFF",vim="{vim_id}"}} 1.0',
    } <= fleet_lines, text[-3000:]
