"""`eventfed stream` with `ves` subscriptions against the real Kafka: every record a valid VES
event, alarms raised and cleared in pairs across a worker restart, a faults-only feed that ONAP's
closed loop (a Holmes-shaped consumer) acts on correctly, unmappable events dead-lettered."""

from __future__ import annotations

import json
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bridge.simulator.novasim import SimulatedCloud, raw_record
from tests.support.holmes import HolmesShapedConsumer, check_closed_loop, expected_from_statuses
from tests.support.kafka import headers_of
from tests.support.stream import StreamRun

pytestmark = pytest.mark.integration

VIM = "owner_region-ves"
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "ves" / "CommonEventFormat_30.2.1_ONAP.json"

SUBSCRIPTIONS = """
subscriptions:
  - name: alarms
    match:
      phases: [start, end, error, none]
    sink: {type: kafka, topic: "test.sub.ves.{u}", format: ves}
  - name: faults
    sink: {type: kafka, topic: "test.sub.faults.{u}", format: ves, ves: {domains: [fault]}}
"""

# Per VM, before and after the worker restarts: (action, phase, vm_state forced before it).
BEFORE_RESTART = [("create", "end", None), ("power_off", "end", None)]
AFTER_RESTART = [
    ("power_on", "end", None),
    ("reboot", "start", None),
    ("reboot", "error", None),
    ("reboot", "error", "error"),
    ("reboot", "end", None),
]
VMS = 6
# Per VM on the feed of both domains: a stateChange per event, and six faults.
FAULTS_PER_VM = 6


@cache
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


@pytest.fixture
def stream_run(tmp_path, unique, kafka_bootstrap):
    run = StreamRun(tmp_path, unique, kafka_bootstrap, SUBSCRIPTIONS)
    yield run
    run.stop_all()


def test_ves_feed_records_are_valid_and_alarms_pair_across_a_restart(stream_run):
    u = stream_run.unique
    cloud = SimulatedCloud(seed=11)
    vms = [cloud.new_vm(i) for i in range(VMS)]

    def records(steps: list[tuple[str, str, str | None]]) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for action, phase, vm_state in steps:
            for vm in vms:
                if vm_state is not None:
                    vm.vm_state = vm_state
                out.append(
                    (vm.uuid, raw_record(cloud.action(vm, action, phase, "versioned"), VIM, cloud.tick()))
                )
        return out

    topic = f"test.sub.ves.{u}"
    worker = stream_run.start("w1")
    stream_run.send(records(BEFORE_RESTART))
    # create: a stateChange; power_off: the VM failure raised, then its stateChange.
    first = stream_run.read(topic, expected=VMS * (len(BEFORE_RESTART) + 1))
    assert worker.terminate(60) == 0
    stream_run.start("w2")
    unmappable = records([("reboot", "error", "exploded")])[:1]
    vms[0].vm_state = "active"
    stream_run.send([*unmappable, *records(AFTER_RESTART)])
    expected = VMS * (len(BEFORE_RESTART) + len(AFTER_RESTART) + FAULTS_PER_VM)
    got = stream_run.read(topic, expected=expected)
    assert len(first) == VMS * (len(BEFORE_RESTART) + 1)
    # At-least-once: a restart may write some records again; each is the same record.
    unique_records = {(m.key(), m.value()): m for m in got}
    assert len(unique_records) == expected

    by_vm: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for msg in got:
        assert headers_of(msg)["content-type"].startswith(b"application/json")
        document = json.loads(msg.value())
        errors = [e.message for e in validator().iter_errors(document)]
        assert not errors, errors
        header = document["event"]["commonEventHeader"]
        assert msg.key().decode() == header["sourceId"]
        if not by_vm[header["sourceId"]] or by_vm[header["sourceId"]][-1] != document:
            by_vm[header["sourceId"]].append(document)
    assert set(by_vm) == {vm.uuid for vm in vms}

    for uuid, documents in by_vm.items():
        faults = [
            (
                d["event"]["commonEventHeader"]["eventName"],
                d["event"]["faultFields"]["eventSeverity"],
                d["event"]["commonEventHeader"]["eventId"],
            )
            for d in documents
            if d["event"]["commonEventHeader"]["domain"] == "fault"
        ]
        # power_off raises the VM failure, power_on (after the restart) clears it; the failed
        # reboot of the running VM is an action failure; the VM in error raises a new VM failure;
        # the reboot's end clears both.
        assert [f[:2] for f in faults] == [
            ("Fault_MultiCloud_VMFailure", "CRITICAL"),
            ("Fault_MultiCloud_VMFailureCleared", "NORMAL"),
            ("Fault_eventfed_VmActionFailed", "MAJOR"),
            ("Fault_MultiCloud_VMFailure", "CRITICAL"),
            ("Fault_eventfed_VmActionFailedCleared", "NORMAL"),
            ("Fault_MultiCloud_VMFailureCleared", "NORMAL"),
        ], uuid
        ids = [f[2] for f in faults]
        assert ids[0] == ids[1] and ids[2] == ids[4] and ids[3] == ids[5] and len(set(ids)) == 3
        assert len(documents) == len(BEFORE_RESTART) + len(AFTER_RESTART) + FAULTS_PER_VM
        sequences = [d["event"]["commonEventHeader"]["sequence"] for d in documents]
        assert sequences == list(range(len(documents)))

    # The faults-only feed, read as ONAP's closed loop reads it: ONSET when the VM went down
    # (stopped; in error), ABATED when it came back, nothing for the failed reboot of a running VM.
    faults_topic = f"test.sub.faults.{u}"
    fault_records = stream_run.read(faults_topic, expected=VMS * FAULTS_PER_VM)
    consumer = HolmesShapedConsumer().consume_all(m.value() for m in fault_records)
    settled = expected_from_statuses(["ACTIVE", "SHUTOFF", "ACTIVE", "ERROR", "ACTIVE"])
    check_closed_loop(consumer, {vm.uuid: settled for vm in vms})
    assert settled.onsets == 2

    dead = stream_run.read(stream_run.dlq_topic, expected=1)
    assert [headers_of(m)["eventfed.reason"] for m in dead] == [b"ves_unknown_vm_state"]
