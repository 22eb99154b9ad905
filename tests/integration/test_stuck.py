"""Stuck actions against the real Kafka: a start with no end raises a STUCK event and a VES fault
after the (short, test-set) time, its end clears them, and the timer survives a kill -9 of the
worker, since it lives in the VM's state record."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.simulator.novasim import SimulatedCloud, SimulatedVm, raw_record
from streams import codecs, ves
from tests.integration.test_ves import validator
from tests.support.kafka import Message, headers_of
from tests.support.stream import StreamRun

pytestmark = pytest.mark.integration

VIM = "owner_region-stuck"
SUBSCRIPTIONS = """
subscriptions:
  - name: alarms
    match: {events: [POWER_OFF]}
    sink: {type: kafka, topic: "test.sub.ves.{u}", format: ves}
  - name: stuck
    match: {events: [STUCK]}
    sink: {type: kafka, topic: "test.sub.stuck.{u}", format: json}
"""


@pytest.fixture
def stream_run(tmp_path, unique, kafka_bootstrap):
    run = StreamRun(tmp_path, unique, kafka_bootstrap, SUBSCRIPTIONS, partitions=2)
    yield run
    run.stop_all()


class Cloud:
    """A simulated cloud on the wall clock: a stuck action's time runs from now."""

    def __init__(self, run: StreamRun) -> None:
        self.run = run
        self.sim = SimulatedCloud(seed=21, start=datetime.now(UTC))

    def send(self, *steps: tuple[SimulatedVm, str, str]) -> None:
        records = []
        for vm, action, phase in steps:
            # Never backwards: an end stamped before its start would be stale, as Nova's ordering says.
            self.sim.clock = max(self.sim.clock, datetime.now(UTC))
            note = self.sim.action(vm, action, phase, "versioned")
            records.append((vm.uuid, raw_record(note, VIM, self.sim.clock)))
        self.run.send(records)


def ves_documents(records: list[Message]) -> list[dict[str, Any]]:
    documents = []
    for record in records:
        document = json.loads(record.value())
        errors = [e.message for e in validator().iter_errors(document)]
        assert not errors, errors
        assert record.key().decode() == document["event"]["commonEventHeader"]["sourceId"]
        documents.append(document)
    return documents


def stuck_faults(documents: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(sourceId, eventName) -> eventId of the stuck raises and clears (duplicates folded)."""
    found = {}
    for document in documents:
        fields = document["event"].get("faultFields") or {}
        if fields.get("alarmCondition") == ves.STUCK_CONDITION:
            header = document["event"]["commonEventHeader"]
            found[(header["sourceId"], header["eventName"])] = header["eventId"]
    return found


def stuck_events(run: StreamRun, until_count: int, timeout: float = 120) -> list[Any]:
    def count(records: list[Message]) -> int:
        return sum(1 for r in records if headers_of(r).get("status") == b"STUCK")

    records = run.read(run.events_topic, timeout=timeout, until=lambda rs: count(rs) >= until_count)
    return [codecs.decode(r.value()) for r in records if headers_of(r).get("status") == b"STUCK"]


def test_a_start_with_no_end_raises_stuck_after_its_time_and_the_end_clears_it(stream_run):
    ves_topic = f"test.sub.ves.{stream_run.unique}"
    stream_run.start("w1", EVENTFED_STUCK_AFTER="DELETE=3s,REBOOT=3s,POWER_OFF=off")
    cloud = Cloud(stream_run)
    deleting, rebooting, quick, untimed = (cloud.sim.new_vm(i) for i in range(4))
    cloud.send(*((vm, "create", "end") for vm in (deleting, rebooting, quick, untimed)))
    cloud.send(
        (deleting, "delete", "start"),
        (rebooting, "reboot", "start"),
        (quick, "reboot", "start"),
        (quick, "reboot", "end"),
        (untimed, "power_off", "start"),
    )

    stuck = stuck_events(stream_run, 2)
    assert {(e["instance_id"], e["event_type"]) for e in stuck} == {
        (deleting.uuid, "instance.delete.start"),
        (rebooting.uuid, "instance.reboot.start"),
    }
    assert {(e["status"], e["phase"]) for e in stuck} == {("STUCK", "error")}
    feed = [json.loads(r.value()) for r in stream_run.read(f"test.sub.stuck.{stream_run.unique}", expected=2)]
    assert {e["instance_id"] for e in feed} == {deleting.uuid, rebooting.uuid}

    def faults_seen(names: int) -> dict[tuple[str, str], str]:
        records = stream_run.read(ves_topic, until=lambda rs: len(stuck_faults(ves_documents(rs))) >= names)
        return stuck_faults(ves_documents(records))

    raised = faults_seen(2)
    assert set(raised) == {
        (deleting.uuid, ves.STUCK_EVENT_NAME),
        (rebooting.uuid, ves.STUCK_EVENT_NAME),
    }

    cloud.send((deleting, "delete", "end"), (rebooting, "reboot", "end"))
    faults = faults_seen(4)
    for vm in (deleting, rebooting):
        assert faults[(vm.uuid, ves.STUCK_CLEAR_EVENT_NAME)] == faults[(vm.uuid, ves.STUCK_EVENT_NAME)]
    assert len(faults) == 4
    # The ends themselves are on the events topic, as every end; nothing else got stuck: the quick
    # reboot ended in time, the power-off has no timer.
    events = [codecs.decode(r.value()) for r in stream_run.read(stream_run.events_topic, expected=13)]
    assert {(e["instance_id"], e["status"]) for e in events if e["phase"] == "end"} >= {
        (deleting.uuid, "DELETE"),
        (rebooting.uuid, "REBOOT"),
    }
    assert {e["instance_id"] for e in events if e["status"] == "STUCK"} == {deleting.uuid, rebooting.uuid}


def test_the_timer_survives_a_kill_9_of_the_worker(stream_run):
    ves_topic = f"test.sub.ves.{stream_run.unique}"
    settings = {"EVENTFED_STUCK_AFTER": "DELETE=30s"}
    worker = stream_run.start("w1", **settings)
    cloud = Cloud(stream_run)
    vm = cloud.sim.new_vm(0)
    cloud.send((vm, "create", "end"), (vm, "delete", "start"))
    key = f"{VIM}/{vm.uuid}"

    def pending_delete(records: list[Message]) -> dict[str, Any] | None:
        latest = None
        for record in records:
            if record.key().decode() == key and record.value() is not None:
                latest = json.loads(record.value())["eventfed"].get("pending", {}).get("DELETE")
        return latest

    states = stream_run.read(stream_run.state_topic, until=lambda rs: pending_delete(rs) is not None)
    timer = pending_delete(states)
    assert timer is not None and timer["stuck"] is False
    # Killed before the deadline: nothing stuck yet.
    assert stuck_events(stream_run, 1, timeout=3) == []
    worker.kill()

    stream_run.start("w2", **settings)
    [event] = {e["message_id"]: e for e in stuck_events(stream_run, 1, timeout=180)}.values()
    assert event["instance_id"] == vm.uuid
    # The deadline written before the kill is the one that fired: the timer came back with the state.
    assert ves.epoch_micros(event["occurred_at"]) == timer["deadline"]
    records = stream_run.read(ves_topic, until=lambda rs: len(stuck_faults(ves_documents(rs))) >= 1)
    assert list(stuck_faults(ves_documents(records))) == [(vm.uuid, ves.STUCK_EVENT_NAME)]

    cloud.send((vm, "delete", "end"))
    records = stream_run.read(ves_topic, until=lambda rs: len(stuck_faults(ves_documents(rs))) >= 2)
    faults = stuck_faults(ves_documents(records))
    assert faults[(vm.uuid, ves.STUCK_CLEAR_EVENT_NAME)] == faults[(vm.uuid, ves.STUCK_EVENT_NAME)]
