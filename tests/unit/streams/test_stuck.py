"""Stuck actions: the setting, the timers in the state record, the STUCK event and VES fault, their
clear, and the sweep's ordered writes. Pure logic and the runner with fakes; no broker."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.settings import SettingsError, StreamSettings, load
from bridge.simulator.novasim import SimulatedCloud, raw_record
from schemas.state import META
from streams import codecs, pipeline, stuck, ves
from streams.subscriptions import load_subscriptions
from tests.unit.streams.test_runner import (
    DLQ,
    EVENTS,
    RAW,
    STATE,
    FakeOffsets,
    FakeProducer,
    FakeReader,
    Journal,
    Message,
)
from tests.unit.streams.test_ves import VIM, assert_valid_ves, fault_of

SUBS = load_subscriptions(
    """
subscriptions:
  - name: ves-all
    match: {phases: [start, end, error, none]}
    sink: {type: kafka, topic: ves.all, format: ves}
  - name: ves-power-only
    match: {events: [POWER_OFF]}
    sink: {type: kafka, topic: ves.power, format: ves, ves: {reporting_entity_name: east}}
  - name: ves-other-vim
    match: {vims: [somewhere_else]}
    sink: {type: kafka, topic: ves.other, format: ves}
  - name: stuck-json
    match: {events: [STUCK]}
    sink: {type: kafka, topic: stuck.json}
  - name: deletes-json
    match: {events: [DELETE]}
    sink: {type: kafka, topic: deletes.json}
"""
)
STUCK_AFTER = stuck.parse_stuck_after("DELETE=10m,REBOOT=5m,SHUT_DOWN=off")
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at(seconds: float) -> float:
    return (T0 + timedelta(seconds=seconds)).timestamp()


# --- the setting --------------------------------------------------------------------------------


def test_defaults_time_every_phased_kind_and_a_delete_gets_ten_minutes():
    defaults = stuck.parse_stuck_after("")
    assert defaults == dict(stuck.DEFAULT_STUCK_AFTER)
    assert stuck.seconds_for(defaults, "DELETE") == 600
    assert stuck.seconds_for(defaults, "SNAPSHOT") == 3600
    assert stuck.seconds_for(defaults, "CREATE") == defaults["default"] == 1800


@pytest.mark.parametrize(
    ("text", "kind", "seconds"),
    [
        ("DELETE=2m", "DELETE", 120),
        ("delete = 90s", "DELETE", 90),
        ("REBOOT=1.5h", "REBOOT", 5400),
        ("REBOOT=45", "REBOOT", 45),
        ("REBOOT=off", "REBOOT", 0),
        ("REBOOT=0", "REBOOT", 0),
        ("default=1h", "CREATE", 3600),
        ("DELETE=2m,", "POWER_OFF", 600),  # what is not named keeps its default
    ],
)
def test_an_override_names_kinds_and_durations(text, kind, seconds):
    assert stuck.seconds_for(stuck.parse_stuck_after(text), kind) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("DELET=2m", "'DELET' is not a status kind"),
        ("DELETE=2x", "'2x' is not a duration"),
        ("DELETE", "'DELETE' is not KIND=DURATION"),
        ("DELETE=8d", "DELETE: '8d' is not a duration"),
        ("DELETE=700000", "not between 0 and 7 days"),
    ],
)
def test_a_bad_override_is_refused_naming_it(text, message):
    with pytest.raises(ValueError, match=message):
        stuck.parse_stuck_after(text)


def test_the_setting_comes_from_the_environment_or_the_yaml_file(monkeypatch, tmp_path):
    monkeypatch.setenv("EVENTFED_STUCK_AFTER", "DELETE=2m,SNAPSHOT=off")
    settings = load(StreamSettings)
    assert (settings.stuck_after["DELETE"], settings.stuck_after["SNAPSHOT"]) == (120, 0)
    assert settings.stuck_after["REBOOT"] == 600
    assert settings.stuck_check_seconds == 12
    monkeypatch.delenv("EVENTFED_STUCK_AFTER")
    config = tmp_path / "stream.yaml"
    config.write_text("stuck_after:\n  DELETE: 5s\n  default: 20m\n")
    monkeypatch.setenv("EVENTFED_CONFIG_FILE", str(config))
    settings = load(StreamSettings)
    assert (settings.stuck_after["DELETE"], stuck.seconds_for(settings.stuck_after, "CREATE")) == (5, 1200)
    assert settings.stuck_check_seconds == 1
    monkeypatch.setenv("EVENTFED_STUCK_AFTER", "DELETE=soon")
    with pytest.raises(SettingsError, match=r"EVENTFED_STUCK_AFTER .*'soon' is not a duration"):
        load(StreamSettings)


# --- the timers, pure ---------------------------------------------------------------------------


def event(kind: str, phase: str, state: str = "active") -> dict[str, Any]:
    return {"status": kind, "phase": phase, "state": state, "event_type": f"instance.{kind.lower()}.{phase}"}


def test_a_start_sets_a_timer_from_when_it_was_handled_and_its_end_stops_it():
    timers = stuck.next_timers(event("DELETE", "start"), {}, STUCK_AFTER, 1_000_000, 3_000_000)
    assert timers.pending == {
        "DELETE": stuck.Pending("DELETE", "instance.delete.start", 1_000_000, 603_000_000, after=600)
    }
    assert not timers.pending["DELETE"].due(602_999_999) and timers.pending["DELETE"].due(603_000_000)
    # A nested action (the delete's shutdown, whose time is off here) leaves it alone.
    nested = stuck.next_timers(event("SHUT_DOWN", "end"), timers.pending, STUCK_AFTER, 2, 2)
    assert nested.pending == timers.pending and nested.cleared == ()
    ended = stuck.next_timers(event("DELETE", "end"), timers.pending, STUCK_AFTER, 5, 5)
    assert ended == stuck.Timers({}, ())


def test_a_fired_timer_is_cleared_by_its_end_its_error_a_new_start_or_the_vm_gone():
    fired = stuck.Pending("REBOOT", "instance.reboot.start", 1, 2, stuck=True, sequence=4)
    other = stuck.Pending("DELETE", "instance.delete.start", 1, 9)
    before = {"REBOOT": fired, "DELETE": other}
    for phase in ("end", "error"):
        assert stuck.next_timers(event("REBOOT", phase), before, STUCK_AFTER, 5, 5) == stuck.Timers(
            {"DELETE": other}, (fired,)
        )
    restarted = stuck.next_timers(event("REBOOT", "start"), before, STUCK_AFTER, 5, 5)
    assert restarted.cleared == (fired,) and not restarted.pending["REBOOT"].stuck
    gone = stuck.next_timers(event("UPDATE", "none", state="deleted"), before, STUCK_AFTER, 5, 5)
    assert gone == stuck.Timers({}, (fired,))


def test_a_kind_without_a_time_and_a_processor_without_settings_set_no_timer():
    assert stuck.next_timers(event("SHUT_DOWN", "start"), {}, STUCK_AFTER, 1, 1).pending == {}
    assert stuck.next_timers(event("DELETE", "start"), {}, {}, 1, 1).pending == {}


def test_pending_round_trips_through_the_state_record_and_ignores_garbage():
    pending = {"DELETE": stuck.Pending("DELETE", "instance.delete.start", 1, 2, True, 3)}
    meta = json.loads(json.dumps(stuck.pending_to_meta(pending)))
    assert stuck.pending_of(meta) == pending
    assert stuck.pending_of({"pending": {"DELETE": {"started_at": "x"}, "REBOOT": 7}}) == {}
    assert stuck.pending_of(None) == {} and stuck.pending_to_meta({}) == {}


# --- the processor: STUCK event, VES fault, clear -------------------------------------------------


class Harness:
    """A worker's processor over a state store, with the clock given per call."""

    def __init__(self, subscriptions=SUBS) -> None:
        self.subscriptions = subscriptions
        self.state: dict[bytes, dict] = {}
        self.offset = 0
        self.restart()
        self.cloud = SimulatedCloud(seed=4, start=T0)
        self.vm = self.cloud.new_vm(0)
        self.key = f"{VIM}/{self.vm.uuid}".encode()

    def restart(self) -> None:
        """A new worker (a restart, or the partition moved) over the state as the changelog has it."""
        self.state = json.loads(json.dumps({k.decode(): v for k, v in self.state.items()}))
        self.state = {k.encode(): v for k, v in self.state.items()}
        self.processor = pipeline.Processor(
            pipeline.Topics("events", "dlq"), lambda: self.subscriptions, 600, stuck_after=STUCK_AFTER
        )

    def record(self, action: str, phase: str, vm_state: str | None = None) -> bytes:
        if vm_state is not None:
            self.vm.vm_state = vm_state
        note = self.cloud.action(self.vm, action, phase, "versioned")
        return json.dumps(raw_record(note, VIM, self.cloud.clock)).encode()

    def feed(self, body: bytes, now: float, offset: int | None = None) -> pipeline.Outcome:
        if offset is None:
            self.offset += 1
            offset = self.offset
        outcome = self.processor.process(b"k", body, pipeline.Source("raw", 0, offset), self.state.get, now)
        if outcome.new_state is not None:
            self.state[outcome.state_key] = outcome.new_state
        return outcome

    def sweep(self, now: float, keep: bool = True) -> pipeline.Outcome | None:
        outcome = self.processor.expire(self.key, self.state[self.key], now)
        if outcome is not None and keep:
            assert outcome.new_state is not None
            self.state[self.key] = outcome.new_state
        return outcome


def on(outcome: pipeline.Outcome, topic: str) -> list[dict[str, Any]]:
    found = []
    for output in outcome.outputs:
        if output.topic == topic:
            document = json.loads(output.value)
            if topic.startswith("ves."):
                assert dict(output.headers)["content-type"] == pipeline.CONTENT_TYPES["ves"]
                assert_valid_ves(document)
            found.append(document)
    return found


def faults_on(outcome: pipeline.Outcome, topic: str = "ves.all") -> list[tuple[str, str, str, str]]:
    return [fault_of(d) for d in on(outcome, topic) if d["event"]["commonEventHeader"]["domain"] == "fault"]


def stuck_faults(outcome: pipeline.Outcome, topic: str = "ves.all") -> list[tuple[str, str, str, str]]:
    return [
        fault_of(d)
        for d in on(outcome, topic)
        if d["event"].get("faultFields", {}).get("alarmCondition") == ves.STUCK_CONDITION
    ]


def test_a_delete_with_no_end_raises_at_its_deadline_not_before_and_once():
    h = Harness()
    h.feed(h.record("create", "end"), at(1))
    started = h.feed(h.record("delete", "start"), at(2))
    assert started.kind == pipeline.APPLIED and stuck_faults(started) == []
    assert h.state[h.key][META]["pending"]["DELETE"]["stuck"] is False
    assert h.sweep(at(2 + 599)) is None
    raised = h.sweep(at(2 + 600))
    assert raised is not None and raised.kind == pipeline.STUCK and raised.reason == "DELETE"

    # The canonical event: the VM as last known, status STUCK, valid in the Avro schema.
    [canonical] = [o for o in raised.outputs if o.topic == "events"]
    decoded = codecs.decode(canonical.value)
    assert (decoded["status"], decoded["phase"], decoded["event_type"]) == (
        "STUCK",
        "error",
        "instance.delete.start",
    )
    assert decoded["instance_id"] == h.vm.uuid and decoded["task_state"] == "deleting"
    assert decoded["occurred_at"] == datetime.fromtimestamp(at(602), UTC)
    assert decoded["fault"]["message"] == "DELETE has had no end or error for 600s"
    assert dict(canonical.headers)["status"] == b"STUCK"
    # Subscriptions selecting STUCK get it in their format; those selecting DELETE do not.
    assert [e["status"] for e in on(raised, "stuck.json")] == ["STUCK"]
    assert on(raised, "deletes.json") == []

    # The VES fault: every ves feed watching the VM, whatever its events filter.
    [(name, severity, problem, event_id)] = stuck_faults(raised)
    assert (name, severity, problem) == ("Fault_eventfed_VmActionStuck", "MAJOR", "DELETE has no end")
    assert (
        event_id
        == f"{VIM}/{h.vm.uuid}/stuck/DELETE/{h.state[h.key][META]['pending']['DELETE']['started_at']}"
    )
    [power] = on(raised, "ves.power")
    assert power["event"]["commonEventHeader"]["reportingEntityName"] == "east"
    assert on(raised, "ves.other") == []
    assert set(raised.matched) == {"ves-all", "ves-power-only", "stuck-json"}
    assert h.sweep(at(5000)) is None


def test_the_end_clears_the_stuck_alarm_with_its_event_id_and_its_own_event_goes_on():
    h = Harness()
    h.feed(h.record("create", "end"), at(1))
    h.feed(h.record("reboot", "start"), at(2))
    raised = h.sweep(at(400))
    assert raised is not None
    [(_, _, _, raised_id)] = stuck_faults(raised)
    late_end = h.feed(h.record("reboot", "end"), at(900))
    assert late_end.kind == pipeline.APPLIED
    assert stuck_faults(late_end) == [
        ("Fault_eventfed_VmActionStuckCleared", "NORMAL", "REBOOT has no end", raised_id)
    ]
    # The end itself: its canonical event, and its VES stateChange after the clear.
    documents = on(late_end, "ves.all")
    assert [d["event"]["commonEventHeader"]["domain"] for d in documents] == ["fault", "stateChange"]
    sequences = [d["event"]["commonEventHeader"]["sequence"] for d in documents]
    raised_sequence = on(raised, "ves.all")[0]["event"]["commonEventHeader"]["sequence"]
    assert raised_sequence < sequences[0] < sequences[1]
    assert [codecs.decode(o.value)["status"] for o in late_end.outputs if o.topic == "events"] == ["REBOOT"]
    # A ves feed whose filters skip the reboot still gets the clear of the alarm it got raised.
    assert stuck_faults(late_end, "ves.power") == [stuck_faults(late_end)[0]]
    assert "pending" not in h.state[h.key][META]
    assert h.sweep(at(10_000)) is None


def test_an_error_after_stuck_clears_the_stuck_alarm_and_raises_the_action_failure():
    h = Harness()
    h.feed(h.record("create", "end"), at(1))
    h.feed(h.record("reboot", "start"), at(2))
    assert h.sweep(at(400)) is not None
    failed = h.feed(h.record("reboot", "error"), at(500))
    names = [f[0] for f in faults_on(failed)]
    assert names == ["Fault_eventfed_VmActionStuckCleared", "Fault_eventfed_VmActionFailed"]
    sequences = [d["event"]["commonEventHeader"]["sequence"] for d in on(failed, "ves.all")]
    assert len(sequences) == 3 and sequences == sorted(set(sequences))


def test_an_end_in_time_raises_nothing_and_stops_the_timer():
    h = Harness()
    h.feed(h.record("create", "end"), at(1))
    h.feed(h.record("delete", "start"), at(2))
    h.feed(h.record("shutdown", "start"), at(3))
    h.feed(h.record("shutdown", "end"), at(4))
    ended = h.feed(h.record("delete", "end"), at(5))
    assert stuck_faults(ended) == [] and "pending" not in h.state[h.key][META]
    assert all(h.sweep(at(s)) is None for s in (700, 10_000))


def test_duplicates_and_replays_of_the_end_clear_once_and_the_same_way():
    h = Harness()
    h.feed(h.record("create", "end"), at(1))
    h.feed(h.record("reboot", "start"), at(2))
    assert h.sweep(at(400)) is not None
    end = h.record("reboot", "end")
    first = h.feed(end, at(500))
    end_offset = h.offset
    # The same notification again (a requeue): dropped.
    assert h.feed(end, at(501)).kind == pipeline.DUPLICATE
    # The same raw record after a crash before its offset was committed: written again, the same.
    h.restart()
    replayed = h.feed(end, at(502), offset=end_offset)
    assert replayed.kind == pipeline.REPLAYED
    assert on(replayed, "ves.all") == on(first, "ves.all")
    assert stuck_faults(replayed)[0][0] == "Fault_eventfed_VmActionStuckCleared"


def test_the_timer_survives_a_restart_and_a_crash_between_the_writes_raises_the_same_again():
    h = Harness()
    h.feed(h.record("create", "end"), at(1))
    h.feed(h.record("delete", "start"), at(2))
    h.restart()  # the worker dies before the deadline; the next one reads the changelog
    assert h.sweep(at(300)) is None
    once = h.sweep(at(700), keep=False)  # outputs written, then a crash before the state
    h.restart()
    again = h.sweep(at(800))
    assert once is not None and again is not None
    assert [(o.topic, o.value) for o in once.outputs] == [(o.topic, o.value) for o in again.outputs]
    assert h.sweep(at(900)) is None


def test_a_stuck_delete_alarms_and_the_vm_gone_clears_it():
    h = Harness()
    h.feed(h.record("create", "end"), at(1))
    h.feed(h.record("delete", "start"), at(2))
    raised = h.sweep(at(700))
    assert raised is not None
    gone = h.feed(h.record("delete", "end"), at(800))
    assert [f[0] for f in stuck_faults(gone)] == ["Fault_eventfed_VmActionStuckCleared"]
    # The deleted VM raises no VM failure: a delete is deliberate.
    assert [d["event"]["commonEventHeader"]["domain"] for d in on(gone, "ves.all")] == [
        "fault",
        "stateChange",
    ]


# --- a delete and the VM failure alarm ------------------------------------------------------------


def test_a_delete_clears_a_standing_vm_failure_and_raises_none_of_its_own():
    h = Harness()
    h.feed(h.record("create", "end"), at(1))
    raised = h.feed(h.record("power_off", "end"), at(2))
    [(name, _, _, alarm_id)] = faults_on(raised)
    assert name == "Fault_MultiCloud_VMFailure"
    # The delete starts on the stopped VM: no new alarm, the old one stands until the VM is gone.
    assert (
        on(h.feed(h.record("delete", "start"), at(3)), "ves.all")[0]["event"]["commonEventHeader"]["domain"]
        == "stateChange"
    )
    cleared = h.feed(h.record("delete", "end"), at(4))
    assert faults_on(cleared) == [("Fault_MultiCloud_VMFailureCleared", "NORMAL", "AlarmOff", alarm_id)]
    assert "alarm" not in h.state[h.key][META]


def test_a_healthy_vm_deleted_raises_nothing_and_a_failed_delete_is_an_action_failure():
    h = Harness()
    h.feed(h.record("create", "end"), at(1))
    h.feed(h.record("delete", "start"), at(2))
    gone = h.feed(h.record("delete", "end"), at(3))
    assert [d["event"]["commonEventHeader"]["domain"] for d in on(gone, "ves.all")] == ["stateChange"]
    h2 = Harness()
    h2.feed(h2.record("create", "end"), at(1))
    h2.feed(h2.record("delete", "start"), at(2))
    failed = h2.feed(h2.record("delete", "error"), at(3))
    assert [f[:2] for f in faults_on(failed)] == [("Fault_eventfed_VmActionFailed", "MAJOR")]


# --- the sweep in the runner: owned partitions, outputs then state ---------------------------------


def test_the_sweep_raises_on_owned_partitions_only_and_writes_outputs_before_state():
    from streams.runner import BatchRunner, BatchWriter

    journal = Journal()
    processor = pipeline.Processor(pipeline.Topics(EVENTS, DLQ), lambda: SUBS, 600, stuck_after=STUCK_AFTER)
    runner = BatchRunner(
        processor,
        BatchWriter(FakeProducer(journal), delivery_timeout=1.0),
        FakeOffsets(journal),
        FakeReader(),
        {},
        STATE,
        current_generation=lambda: 1,
    )
    cloud = SimulatedCloud(seed=6, start=T0)
    messages = []
    for partition in (1, 2):
        vm = cloud.new_vm(partition)
        for offset, (action, phase) in enumerate((("create", "end"), ("delete", "start"))):
            note = cloud.action(vm, action, phase, "versioned")
            body = json.dumps(raw_record(note, VIM, cloud.tick())).encode()
            messages.append(Message((RAW, partition), offset, vm.uuid.encode(), body))

    async def scenario():
        await runner.handle_batch(messages)
        await runner.drain()
        await runner.commit_written()  # the states staged meanwhile confirmed
        journal.clear()
        # The starts were handled now (real time): ten minutes on, both deletes are due.
        later = datetime.now(UTC).timestamp() + 601
        first = await runner.raise_stuck_actions({2}, later)
        second = await runner.raise_stuck_actions({1, 2}, later)
        third = await runner.raise_stuck_actions({1, 2}, later)
        await runner.commit_written()
        return first, second, third

    assert asyncio.run(scenario()) == (1, 1, 0)
    topics = [entry[1] for entry in journal if entry[0] == "write"]
    # Per sweep: the STUCK event and the feeds first, the state last (on the VM's partition).
    assert topics == [EVENTS, "ves.all", "ves.power", "stuck.json", STATE] * 2
    assert [entry[3] for entry in journal if entry[1] == STATE] == [2, 1]
    assert all(state[META]["pending"]["DELETE"]["stuck"] for state in runner.state.values())


# --- the contract: STUCK needs no new schema version -----------------------------------------------


def test_the_stuck_event_fits_the_avro_schema_json_and_openapi_unchanged():
    from jsonschema import Draft202012Validator

    from bridge.api.openapi import openapi_document
    from bridge.api.vocabulary import StateVocabulary
    from bridge.settings import ApiSettings

    h = Harness()
    h.feed(h.record("create", "end"), at(1))
    h.feed(h.record("delete", "start"), at(2))
    raised = h.sweep(at(700))
    assert raised is not None and raised.event is not None
    # Status kinds are strings, not an Avro enum (schemas/README.md, evolution rule 3): STUCK is a
    # new value, not a new schema, so every consumer's reader still knows the writer's fingerprint.
    assert codecs.FINGERPRINT_HEX == "95292a9022f3a0fc"
    [canonical] = [o for o in raised.outputs if o.topic == "events"]
    assert canonical.value[2:10] == codecs.FINGERPRINT
    assert codecs.decode(canonical.value) == raised.event
    as_json = codecs.encode(raised.event, "json")
    assert codecs.decode(as_json) == raised.event
    document = openapi_document(ApiSettings(), StateVocabulary.from_catalogue(), auth=[])
    record_schema = {
        **document["components"]["schemas"]["VmRecord"],
        "$defs": document["components"]["schemas"],
    }
    errors = [e.message for e in Draft202012Validator(record_schema).iter_errors(json.loads(as_json))]
    assert not errors, errors


# --- the simulator's stuck deletes (the demo's) ----------------------------------------------------


def test_the_simulator_leaves_deletes_stuck_and_a_second_run_ends_them():
    from bridge.simulator.simulate import plan

    full = plan(8, 7, "versioned")
    stuck_run = plan(8, 7, "versioned", stuck_deletes=1)
    ends = plan(8, 7, "versioned", stuck_deletes=1, end_stuck=True)
    # VM 3 is the first VM deleted: its delete starts, then nothing; the second run sends the rest.
    assert [n.event_type for n in ends] == [
        "instance.shutdown.start",
        "instance.shutdown.end",
        "instance.delete.end",
    ]
    started = {n.instance_id for n in stuck_run if n.event_type == "instance.delete.start"}
    ended = {n.instance_id for n in stuck_run if n.event_type == "instance.delete.end"}
    assert {n.instance_id for n in ends} == started - ended and len(started - ended) == 1
    assert len(stuck_run) + len(ends) == len(full)
    assert plan(8, 7, "versioned", end_stuck=True) == []


def test_decode_shows_the_stuck_fault_its_clear_and_the_stuck_event(tmp_path, capsys):
    from bridge.cli import main

    h = Harness()
    h.feed(h.record("create", "end"), at(1))
    h.feed(h.record("delete", "start"), at(2))
    raised = h.sweep(at(700))
    assert raised is not None
    cleared = h.feed(h.record("delete", "end"), at(800))
    records = {
        "raise.json": next(o.value for o in raised.outputs if o.topic == "ves.all"),
        "clear.json": next(o.value for o in cleared.outputs if o.topic == "ves.all"),
        "stuck.avro": next(o.value for o in raised.outputs if o.topic == "events"),
    }
    shown = {}
    for name, value in records.items():
        assert value is not None
        (tmp_path / name).write_bytes(value)
        assert main(["decode", str(tmp_path / name)]) == 0
        shown[name] = json.loads(capsys.readouterr().out)
    names = [shown[n]["event"]["commonEventHeader"]["eventName"] for n in ("raise.json", "clear.json")]
    assert names == [ves.STUCK_EVENT_NAME, ves.STUCK_CLEAR_EVENT_NAME]
    assert (shown["stuck.avro"]["status"], shown["stuck.avro"]["phase"]) == ("STUCK", "error")


# --- an end overtaken by a newer event ------------------------------------------------------------


def test_an_end_older_than_the_state_still_stops_its_timer_and_clears_its_stuck_alarm():
    h = Harness()
    h.feed(h.record("create", "end"), at(1))
    h.feed(h.record("reboot", "start"), at(2))
    raised = h.sweep(at(400))
    assert raised is not None
    end = h.record("reboot", "end")
    newer = h.record("rebuild", "start")
    h.feed(newer, at(500))
    late = h.feed(end, at(501))
    assert (late.kind, late.reason) == (pipeline.STALE, "older")
    # Not to subscribers (they act on the latest state), but the stuck alarm's clear reaches them.
    assert [fault_of(d)[0] for d in on(late, "ves.all")] == [ves.STUCK_CLEAR_EVENT_NAME]
    assert stuck_faults(late)[0][3] == stuck_faults(raised)[0][3]
    assert on(late, "stuck.json") == [] and late.matched == []
    assert set(h.state[h.key][META]["pending"]) == {"REBUILD"}
    assert h.state[h.key]["status"] == "REBUILD"


def test_an_old_end_from_before_the_start_leaves_the_timer():
    h = Harness()
    h.feed(h.record("create", "end"), at(1))
    old_end = h.record("reboot", "end")
    h.feed(h.record("reboot", "start"), at(2))
    stale = h.feed(old_end, at(3))
    assert stale.kind == pipeline.STALE and stale.new_state is None
    assert [o.topic for o in stale.outputs] == ["events"]
    assert h.sweep(at(400)) is not None
