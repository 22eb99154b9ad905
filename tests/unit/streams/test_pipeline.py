from __future__ import annotations

import json

from bridge.simulator.novasim import SimulatedCloud, raw_record
from schemas.state import META
from streams import codecs, pipeline
from streams.subscriptions import load_subscriptions

SUBS = load_subscriptions(
    """
subscriptions:
  - name: spec
    match: {events: [POWER_OFF, DELETE]}
    sink: {type: kafka, topic: spec.json}
  - name: spec-avro
    match: {events: [POWER_OFF]}
    sink: {type: kafka, topic: spec.avro, format: avro}
"""
)
VIM = "o_r"


class Harness:
    def __init__(self, window: float = 600, schema_ids: dict[str, int] | None = None) -> None:
        self.processor = pipeline.Processor(
            pipeline.Topics("events", "dlq"), lambda: SUBS, window, schema_ids
        )
        self.state: dict[bytes, dict] = {}
        self.offset = 0

    def feed(self, value, key=b"k", now=1000.0, offset=None):
        if offset is None:
            self.offset += 1
            offset = self.offset
        body = value if isinstance(value, bytes) else json.dumps(value).encode()
        source = pipeline.Source("raw", 3, offset)
        outcome = self.processor.process(key, body, source, self.state.get, now)
        if outcome.new_state is not None:
            self.state[outcome.state_key] = outcome.new_state
        return outcome


def vm_records():
    cloud = SimulatedCloud(seed=9)
    vm = cloud.new_vm(0)
    notes = {}
    for action, phase in (("create", "end"), ("power_off", "end"), ("power_on", "end"), ("delete", "end")):
        notes[action] = raw_record(cloud.action(vm, action, phase, "versioned"), VIM, cloud.tick())
    return vm, notes


def topics(outcome):
    return [o.topic for o in outcome.outputs]


def test_applied_event_goes_to_events_and_matching_subscriptions_in_their_format():
    h = Harness()
    vm, notes = vm_records()
    h.feed(notes["create"])
    outcome = h.feed(notes["power_off"])
    assert outcome.kind == pipeline.APPLIED
    assert topics(outcome) == ["events", "spec.json", "spec.avro"]
    assert outcome.matched == ["spec", "spec-avro"]
    events, as_json, as_avro = outcome.outputs
    assert codecs.decode(events.value, "avro")["status"] == "POWER_OFF"
    assert json.loads(as_json.value)["state"] == "stopped"
    assert codecs.decode(as_avro.value, "avro")["instance_id"] == vm.uuid
    assert all(o.key == vm.uuid.encode() for o in outcome.outputs)
    assert dict(as_json.headers)["content-type"] == b"application/json"
    state = h.state[f"{VIM}/{vm.uuid}".encode()]
    assert state["status"] == "POWER_OFF" and state[META]["source"] == {
        "topic": "raw",
        "partition": 3,
        "offset": 2,
        "index": 0,
    }


def test_subscriptions_put_in_force_decide_the_next_records():
    in_force = [SUBS]
    processor = pipeline.Processor(pipeline.Topics("events", "dlq"), lambda: in_force[0], 600)
    _, notes = vm_records()
    state: dict[bytes, dict] = {}

    def feed(note: dict, offset: int) -> pipeline.Outcome:
        outcome = processor.process(
            b"k", json.dumps(note).encode(), pipeline.Source("raw", 0, offset), state.get, 1.0
        )
        if outcome.new_state is not None:
            state[outcome.state_key] = outcome.new_state  # type: ignore[index]
        return outcome

    feed(notes["create"], 1)
    assert topics(feed(notes["power_off"], 2)) == ["events", "spec.json", "spec.avro"]
    # A reloaded file is a new list: its rules apply from the next record on.
    in_force[0] = load_subscriptions(
        """
subscriptions:
  - name: power-on
    match: {events: [POWER_ON]}
    sink: {type: kafka, topic: power.on, format: json}
"""
    )
    outcome = feed(notes["power_on"], 3)
    assert topics(outcome) == ["events", "power.on"] and outcome.matched == ["power-on"]
    assert dict(outcome.outputs[1].headers)["subscription"] == b"power-on"


def test_without_a_registry_avro_is_single_object_and_says_so():
    h = Harness()
    _, notes = vm_records()
    h.feed(notes["create"])
    events, _, as_avro = h.feed(notes["power_off"]).outputs
    for output in (events, as_avro):
        assert output.value[:10] == codecs.SINGLE_OBJECT_MAGIC + codecs.FINGERPRINT
        assert (
            dict(output.headers)["content-type"]
            == b"application/vnd.apache.avro+binary; encoding=single-object"
        )


def test_with_a_registry_each_avro_topic_is_framed_with_its_own_schema_id():
    h = Harness(schema_ids={"events": 7, "spec.avro": 300})
    vm, notes = vm_records()
    h.feed(notes["create"])
    outcome = h.feed(notes["power_off"])
    assert outcome.kind == pipeline.APPLIED
    events, as_json, as_avro = outcome.outputs
    for output, schema_id in ((events, 7), (as_avro, 300)):
        assert output.value[:5] == b"\x00" + schema_id.to_bytes(4, "big")
        assert codecs.encode_confluent(outcome.event, schema_id) == output.value
        assert (
            dict(output.headers)["content-type"] == b"application/vnd.apache.avro+binary; encoding=confluent"
        )
    assert codecs.decode_avro(codecs.encode_avro(outcome.event))["instance_id"] == vm.uuid
    assert dict(as_json.headers)["content-type"] == b"application/json"
    assert json.loads(as_json.value)["instance_id"] == vm.uuid


def test_an_avro_topic_without_a_schema_id_gets_nothing_unframed():
    # The subscription topic was never registered: the record is dead-lettered with the reason,
    # not written in single-object encoding to a topic whose readers expect the registry's.
    h = Harness(schema_ids={"events": 7})
    _, notes = vm_records()
    h.feed(notes["create"])
    outcome = h.feed(notes["power_off"])
    assert outcome.kind == pipeline.DEAD
    assert topics(outcome) == ["dlq"]
    headers = dict(outcome.outputs[0].headers)
    assert b"spec.avro-value" in headers["eventfed.error"]


def test_older_event_is_stale_and_only_recorded():
    h = Harness()
    _, notes = vm_records()
    h.feed(notes["create"])
    h.feed(notes["power_on"])
    outcome = h.feed(notes["power_off"])
    assert (outcome.kind, outcome.reason) == (pipeline.STALE, "older")
    assert topics(outcome) == ["events"]
    assert dict(outcome.outputs[0].headers)["eventfed.stale"] == b"older"
    assert outcome.new_state is None


def test_nothing_moves_a_deleted_vm():
    h = Harness()
    vm, notes = vm_records()
    h.feed(notes["create"])
    assert h.feed(notes["delete"]).kind == pipeline.APPLIED
    late = dict(notes["power_on"], timestamp="2099-01-01 00:00:00.000000")
    late["payload"]["nova_object.data"]["updated_at"] = "2099-01-01T00:00:00Z"
    outcome = h.feed(late)
    assert (outcome.kind, outcome.reason) == (pipeline.STALE, "after_delete")
    assert h.state[f"{VIM}/{vm.uuid}".encode()]["state"] == "deleted"


def test_duplicates_in_the_window_and_of_the_state_are_dropped():
    h = Harness()
    _, notes = vm_records()
    h.feed(notes["create"])
    h.feed(notes["power_off"])
    again = h.feed(notes["power_off"])
    assert (again.kind, again.reason) == (pipeline.DUPLICATE, "same_as_state")
    assert again.outputs == []
    h.feed(notes["power_on"])
    old = h.feed(notes["power_off"])
    assert (old.kind, old.reason) == (pipeline.DUPLICATE, "window")


def test_the_record_that_made_the_state_is_republished_when_replayed():
    h = Harness()
    _, notes = vm_records()
    h.feed(notes["create"], offset=1)
    h.feed(notes["power_off"], offset=2)
    fresh = Harness()
    fresh.state = h.state  # a restart: the window is empty, the table restored
    replay = fresh.feed(notes["power_off"], offset=2)
    assert replay.kind == pipeline.REPLAYED
    assert topics(replay) == ["events", "spec.json", "spec.avro"]
    assert replay.new_state is None


def test_window_forgets_after_its_time():
    window = pipeline.DedupWindow(10)
    assert not window.seen_before("a", 0)
    assert window.seen_before("a", 5)
    assert not window.seen_before("a", 20)
    assert not pipeline.DedupWindow(0).seen_before("a", 0) and not pipeline.DedupWindow(0).seen_before("a", 0)


def test_malformed_records_are_dead_lettered_with_their_source():
    h = Harness()
    for body, reason in (
        (b"{not json", "bad_json"),
        (b"[1, 2]", "not_an_object"),
        ({"vim_id": VIM, "event_type": "compute.instance.update", "payload": {"state": 1}}, None),
    ):
        outcome = h.feed(body, offset=41)
        assert outcome.kind == pipeline.DEAD
        assert topics(outcome) == ["dlq"]
        headers = dict(outcome.outputs[0].headers)
        if reason:
            assert headers["eventfed.reason"] == reason.encode()
        assert headers["eventfed.source.offset"] == b"41"
        assert headers["eventfed.source.partition"] == b"3"
        assert headers["eventfed.stage"] == b"stream"


def test_other_notifications_are_ignored():
    h = Harness()
    outcome = h.feed({"vim_id": VIM, "event_type": "compute.metrics.update", "payload": {}})
    assert outcome.kind == pipeline.IGNORED and outcome.outputs == []


def test_tombstone_due():
    deleted = {"state": "deleted", "occurred_at": "2026-01-01T00:00:00.000000Z"}
    epoch = 1767225600.0
    assert not pipeline.tombstone_due(deleted, epoch + 10, 60)
    assert pipeline.tombstone_due(deleted, epoch + 61, 60)
    assert not pipeline.tombstone_due({"state": "active"}, epoch + 1e9, 60)


def _event(fmt, event_type, occurred, **fields):
    return {
        "format": fmt,
        "event_type": event_type,
        "occurred_at": occurred,
        "phase": "end",
        "state": "paused",
        "task_state": None,
        **fields,
    }


def test_twins_are_one_event_in_two_formats_sent_together():
    legacy = _event("legacy", "compute.instance.pause.end", "2026-01-01T10:00:00.100000Z")
    versioned = _event("versioned", "instance.pause.end", "2026-01-01T10:00:00.104000Z")
    assert pipeline.is_twin(versioned, legacy) and pipeline.is_twin(legacy, versioned)
    assert not pipeline.is_twin(dict(versioned, format="legacy"), legacy)
    assert not pipeline.is_twin(dict(versioned, phase="start"), legacy)
    assert not pipeline.is_twin(dict(versioned, state="active"), legacy)
    assert not pipeline.is_twin(dict(versioned, event_type="instance.unpause.end"), legacy)
    assert not pipeline.is_twin(dict(versioned, occurred_at="2026-01-01T10:00:09.000000Z"), legacy)
    # resize_prep and resize_finish share a kind but are two steps.
    prep = _event("legacy", "compute.instance.resize.prep.end", "2026-01-01T10:00:00.100000Z")
    finish = _event("versioned", "instance.resize_finish.end", "2026-01-01T10:00:00.200000Z")
    assert not pipeline.is_twin(finish, prep)
    assert pipeline.is_twin(dict(finish, event_type="instance.resize_prep.end"), prep)


def test_versions_compare_updated_at_at_novas_whole_seconds():
    start = {"occurred_at": "2026-01-01T10:00:00.900000Z", "updated_at": None}
    end = {"occurred_at": "2026-01-01T10:00:00.950000Z", "updated_at": "2026-01-01T10:00:00.000000Z"}
    assert pipeline.version_of(start) == ["2026-01-01T10:00:00.000000Z", "2026-01-01T10:00:00.900000Z"]
    assert pipeline.version_of(start) < pipeline.version_of(end)
    # Across formats only the notification times count.
    legacy = dict(start, format="legacy")
    versioned = dict(end, format="versioned", updated_at="2026-01-01T09:59:58.000000Z")
    assert not pipeline.is_older(
        pipeline.version_of(versioned), pipeline.version_of(legacy), versioned, legacy
    )
    assert pipeline.is_older(pipeline.version_of(legacy), pipeline.version_of(versioned), legacy, versioned)
