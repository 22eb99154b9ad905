"""Polled server snapshots in the stream stage: normalised like a notification, ordered against
notifications by the stale guard, and deduplicated against the notification of the same change."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bridge.poller.snapshot import message_id, polled_record
from bridge.simulator.novasim import SimulatedCloud, raw_record
from schemas.raw import HEADER_SOURCE, POLLED_EVENT_TYPE, build_raw_record, record_key, unpack
from schemas.state import META
from schemas.vocabulary import FORMAT_POLL, KINDS, PHASES, TASK_STATES, VM_STATES, polled_classification
from streams import codecs, pipeline
from streams.normalise import MalformedNotification, normalise
from streams.subscriptions import load_subscriptions
from tests.support.nova_api import server

VIM = "owner_region"
T0 = datetime(2026, 11, 25, 12, 0, 5, 734000, tzinfo=UTC)
SUBS = load_subscriptions(
    """
subscriptions:
  - name: closed-loop
    match: {events: [POWER_OFF, PAUSE, DELETE]}
    sink: {type: kafka, topic: closed.loop}
"""
)


def polled(item: dict, received: datetime = T0) -> dict:
    record = polled_record(VIM, item, received, 1_000_000)
    return json.loads(record.value)  # type: ignore[union-attr]


def whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


class Harness:
    def __init__(self) -> None:
        self.processor = pipeline.Processor(pipeline.Topics("events", "dlq"), lambda: SUBS, 600)
        self.state: dict[bytes, dict] = {}
        self.offset = 0

    def feed(self, document: dict) -> pipeline.Outcome:
        self.offset += 1
        outcome = self.processor.process(
            b"k",
            json.dumps(document).encode(),
            pipeline.Source("raw", 0, self.offset),
            self.state.get,
            1000.0,
        )
        if outcome.new_state is not None:
            self.state[outcome.state_key] = outcome.new_state  # type: ignore[index]
        return outcome

    def vm_state(self, uuid: str) -> dict:
        return self.state[f"{VIM}/{uuid}".encode()]


# --- normalising ---------------------------------------------------------------------------------


def test_polled_server_becomes_a_canonical_event():
    item = server("c91edb31-de52-4ec3-9d0d-cc98c81a0a11", "paused", T0, host="compute-7", tenant_id="t1")
    event = normalise(polled(item))
    assert event is not None
    assert (event["status"], event["phase"], event["format"]) == ("PAUSE", "end", FORMAT_POLL)
    assert event["instance_id"] == "c91edb31-de52-4ec3-9d0d-cc98c81a0a11"
    assert (event["state"], event["task_state"], event["state_description"]) == ("paused", None, "")
    assert (event["host"], event["node"], event["tenant_id"], event["user_id"]) == (
        "compute-7",
        "fake-mini",
        "t1",
        "admin",
    )
    assert event["launched_at"] == "2026-11-25T12:00:05.000000"
    assert event["updated_at"] == event["occurred_at"] == whole_second(T0)
    assert event["received_at"] == T0
    assert event["power_state"] == "paused"
    assert event["event_type"] == POLLED_EVENT_TYPE and event["publisher_id"] == f"eventfed-poll:{VIM}"
    assert event["message_id"] == message_id(VIM, item)
    assert (event["instance_flavor_id"], event["image_ref_url"]) == (
        "1",
        "155d900f-4e14-4e4c-a73d-069cbf4541e6",
    )
    assert event["access_ip_v4"] is None and event["metadata"] == {"role": "web"}
    # It fits the schema in every wire format.
    assert codecs.decode(codecs.encode_avro(event), "avro")["status"] == "PAUSE"


def test_polled_flavor_of_microversion_2_47_and_a_fault():
    item = server("u1", "error", T0)
    item["flavor"] = {"original_name": "m1.small", "vcpus": 2, "ram": 2048, "disk": 20, "ephemeral": 5}
    item["fault"] = {"code": 500, "message": "No valid host", "created": "2026-11-25T12:00:01Z"}
    event = normalise(polled(item))
    assert event is not None
    assert (event["status"], event["phase"]) == ("UPDATE", "error")
    assert (event["instance_type"], event["memory_mb"], event["vcpus"], event["disk_gb"]) == (
        "m1.small",
        2048,
        2,
        25,
    )
    assert event["fault"] == {
        "exception": None,
        "message": "No valid host",
        "code": 500,
        "module_name": None,
        "function_name": None,
    }


@pytest.mark.parametrize(
    ("vm_state", "task_state", "expected"),
    [
        ("active", "pausing", ("PAUSE", "start")),
        ("paused", None, ("PAUSE", "end")),
        ("active", "powering-off", ("POWER_OFF", "start")),
        ("stopped", None, ("POWER_OFF", "end")),
        ("active", "deleting", ("DELETE", "start")),
        ("deleted", None, ("DELETE", "end")),
        ("soft-delete", None, ("SOFT_DELETE", "end")),
        ("active", "rebooting_hard", ("REBOOT", "start")),
        ("building", "spawning", ("CREATE", "start")),
        ("building", None, ("CREATE", "start")),
        ("active", None, ("UPDATE", "end")),
        ("error", "rebuilding", ("REBUILD", "error")),
    ],
)
def test_polled_status_and_phase_table(vm_state, task_state, expected):
    found = polled_classification(vm_state, task_state)
    assert (found.kind, found.phase) == expected


def test_every_nova_state_has_a_known_kind_and_phase():
    for vm_state in VM_STATES:
        for task_state in (None, *TASK_STATES):
            found = polled_classification(vm_state, task_state)
            assert found.kind in KINDS and found.phase in PHASES, (vm_state, task_state)


def test_polled_server_without_vm_state_is_malformed():
    item = server("u1", "active", T0)
    del item["OS-EXT-STS:vm_state"]  # what a non-admin token sees
    with pytest.raises(MalformedNotification) as caught:
        normalise(polled(item))
    assert caught.value.reason == "missing_state"


# --- the raw record ------------------------------------------------------------------------------


def test_polled_record_has_the_listeners_key_and_says_it_was_polled():
    cloud = SimulatedCloud(seed=3)
    vm = cloud.new_vm(0)
    notification = cloud.action(vm, "pause", "end", "versioned")
    listened = build_raw_record(
        {"event_type": notification.event_type, "payload": notification.payload, "metadata": {}},
        "INFO",
        VIM,
        T0,
        1_000_000,
    )
    record = polled_record(VIM, server(vm.uuid, "paused", T0), T0, 1_000_000)
    assert record.key == listened.key == vm.uuid.encode()  # type: ignore[union-attr]
    assert (HEADER_SOURCE, b"poll") in record.headers  # type: ignore[union-attr]
    document = json.loads(record.value)  # type: ignore[union-attr]
    assert document["source"] == "poll" and document["timestamp"] == "2026-11-25T12:00:05Z"
    assert "source" not in json.loads(listened.value)  # type: ignore[union-attr]
    # Packed with others, it comes back with the same key and headers.
    [unpacked] = unpack(None, record.value + b"\n", [("eventfed.count", b"1")])  # type: ignore[union-attr]
    assert unpacked.key == record.key and unpacked.headers == record.headers  # type: ignore[union-attr]
    assert record_key(POLLED_EVENT_TYPE, {"id": vm.uuid}, "x") == vm.uuid.encode()


def test_message_id_is_stable_for_the_same_snapshot_and_new_for_a_change():
    item = server("u1", "active", T0)
    again = json.loads(json.dumps(item))
    again["name"] = "renamed but same state and time"
    assert message_id(VIM, item) == message_id(VIM, again)
    assert message_id(VIM, item) != message_id(VIM, server("u1", "active", T0, task_state="pausing"))
    assert message_id(VIM, item) != message_id(VIM, server("u1", "active", T0 + timedelta(seconds=1)))
    assert message_id(VIM, item) != message_id("other_vim", item)


# --- the stale guard and dedupe with mixed sources ---------------------------------------------


def notified(cloud: SimulatedCloud, vm, action: str, phase: str, fmt: str = "versioned") -> dict:
    return raw_record(cloud.action(vm, action, phase, fmt), VIM, cloud.clock)


def snapshot_of(vm, vm_state: str, task_state: str | None = None) -> dict:
    return polled(server(vm.uuid, vm_state, vm.updated_at, task_state=task_state, host=vm.host))


def cloud_and_vm():
    cloud = SimulatedCloud(seed=11, start=T0)
    return cloud, cloud.new_vm(0)


def test_snapshot_after_the_notification_of_the_same_change_is_a_duplicate():
    h = Harness()
    cloud, vm = cloud_and_vm()
    h.feed(notified(cloud, vm, "create", "end"))
    assert h.feed(notified(cloud, vm, "pause", "end")).matched == ["closed-loop"]
    outcome = h.feed(snapshot_of(vm, "paused"))
    assert (outcome.kind, outcome.reason, outcome.outputs) == (pipeline.DUPLICATE, "same_change", [])
    assert h.vm_state(vm.uuid)["format"] == "versioned"


@pytest.mark.parametrize("fmt", ["versioned", "legacy"])
def test_notification_after_the_snapshot_of_the_same_change_reaches_nobody_twice(fmt):
    h = Harness()
    cloud, vm = cloud_and_vm()
    h.feed(notified(cloud, vm, "create", "end", fmt))
    pause_end = notified(cloud, vm, "pause", "end", fmt)
    first = h.feed(snapshot_of(vm, "paused"))  # the poller was quicker than the listener
    assert (first.kind, first.matched) == (pipeline.APPLIED, ["closed-loop"])
    second = h.feed(pause_end)
    assert second.kind in (pipeline.STALE, pipeline.DUPLICATE)
    assert second.matched == [] and all(o.topic == "events" for o in second.outputs)
    assert h.vm_state(vm.uuid)["state"] == "paused"


def test_older_snapshot_does_not_move_the_state_back():
    h = Harness()
    cloud, vm = cloud_and_vm()
    h.feed(notified(cloud, vm, "create", "end"))
    old = snapshot_of(vm, "active")  # read while the VM was still active
    cloud.clock += timedelta(seconds=2)
    h.feed(notified(cloud, vm, "power_off", "start"))
    h.feed(notified(cloud, vm, "power_off", "end"))
    outcome = h.feed(old)
    assert (outcome.kind, outcome.reason) == (pipeline.STALE, "older")
    assert [o.topic for o in outcome.outputs] == ["events"]
    assert h.vm_state(vm.uuid)["state"] == "stopped"


def test_older_notification_does_not_move_a_polled_state_back():
    h = Harness()
    cloud, vm = cloud_and_vm()
    h.feed(notified(cloud, vm, "create", "end"))
    late = notified(cloud, vm, "power_off", "start")  # delayed on the bus
    cloud.clock += timedelta(seconds=2)
    cloud.action(vm, "power_off", "end", "versioned")  # this one was lost
    assert h.feed(snapshot_of(vm, "stopped")).kind == pipeline.APPLIED
    outcome = h.feed(late)
    assert (outcome.kind, outcome.reason) == (pipeline.STALE, "older")
    assert h.vm_state(vm.uuid)["state"] == "stopped"


def test_snapshot_repairs_a_lost_notification_and_reaches_subscribers():
    h = Harness()
    cloud, vm = cloud_and_vm()
    h.feed(notified(cloud, vm, "create", "end"))
    cloud.clock += timedelta(seconds=1)
    cloud.action(vm, "power_off", "start", "versioned")  # lost
    cloud.action(vm, "power_off", "end", "versioned")  # lost
    outcome = h.feed(snapshot_of(vm, "stopped"))
    assert (outcome.kind, outcome.matched) == (pipeline.APPLIED, ["closed-loop"])
    state = h.vm_state(vm.uuid)
    assert (state["state"], state["status"], state["format"]) == ("stopped", "POWER_OFF", "poll")
    # The same snapshot read again (overlap window, restart) is dropped.
    assert h.feed(snapshot_of(vm, "stopped")).kind == pipeline.DUPLICATE
    # Later notifications move it on as usual.
    cloud.clock += timedelta(seconds=1)
    assert h.feed(notified(cloud, vm, "power_on", "start")).kind == pipeline.APPLIED
    assert h.vm_state(vm.uuid)[META]["version"][0] > state[META]["version"][0]


def test_snapshot_of_a_live_vm_after_its_notified_delete_is_stale():
    h = Harness()
    cloud, vm = cloud_and_vm()
    h.feed(notified(cloud, vm, "create", "end"))
    alive = snapshot_of(vm, "active")
    cloud.clock += timedelta(seconds=3)
    h.feed(notified(cloud, vm, "delete", "end"))
    outcome = h.feed(alive)
    assert outcome.kind == pipeline.STALE
    assert h.vm_state(vm.uuid)["state"] == "deleted"


def test_notification_of_a_later_change_after_a_snapshot_applies():
    h = Harness()
    cloud, vm = cloud_and_vm()
    h.feed(notified(cloud, vm, "create", "end"))
    h.feed(snapshot_of(vm, "active"))
    cloud.clock += timedelta(seconds=10)
    outcome = h.feed(notified(cloud, vm, "pause", "end"))
    assert (outcome.kind, outcome.matched) == (pipeline.APPLIED, ["closed-loop"])


def test_same_change_never_compares_two_notifications():
    state = {"format": "versioned", "state": "active", "task_state": None, "host": "h"}
    event = {"format": "legacy", "state": "active", "task_state": None, "host": "h"}
    assert not pipeline.same_change(event, state)
    assert pipeline.same_change({**event, "format": "poll"}, state)


def test_poll_version_is_the_end_of_its_second():
    assert pipeline.version_of({"format": "poll", "updated_at": "2026-11-25T12:00:05.000000Z"}) == [
        "2026-11-25T12:00:05.999999Z",
        "2026-11-25T12:00:05.999999Z",
    ]


def test_event_with_whole_second_updated_at_follows_one_without_it_in_the_same_second():
    """Real Nova 34: instance.create.start has no updated_at, create.end has it in whole seconds."""
    h = Harness()
    cloud, vm = cloud_and_vm()
    start = notified(cloud, vm, "create", "start")
    start["payload"]["nova_object.data"]["updated_at"] = None
    start["timestamp"] = "2026-11-25 12:00:05.900000"
    end = notified(cloud, vm, "create", "end")
    end["payload"]["nova_object.data"]["updated_at"] = "2026-11-25T12:00:05Z"
    end["timestamp"] = "2026-11-25 12:00:05.950000"
    assert h.feed(start).kind == pipeline.APPLIED
    assert h.feed(end).kind == pipeline.APPLIED
    assert h.vm_state(vm.uuid)["state"] == "active"
