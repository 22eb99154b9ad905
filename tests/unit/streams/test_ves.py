"""VES sink: the mapping to VES 7.x, the alarm lifecycle, and validity against ONAP's schema."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bridge.cli import main
from bridge.simulator.novasim import SimulatedCloud, raw_record
from schemas import dead_letter
from schemas.state import META
from streams import codecs, pipeline, ves
from streams.normalise import normalise
from streams.subscriptions import SubscriptionError, load_subscriptions
from tests.unit import nova_samples
from tests.unit.nova_samples import RECEIVED_AT, VIM_ID

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "fixtures" / "ves" / "CommonEventFormat_30.2.1_ONAP.json"
VIM = "owner_region-ves"
ALL_PHASES = "[start, end, error, none]"

SUBS = load_subscriptions(
    f"""
subscriptions:
  - name: ves-all
    match: {{phases: {ALL_PHASES}}}
    sink: {{type: kafka, topic: ves.all, format: ves}}
  - name: ves-deletes-only
    match: {{events: [DELETE]}}
    sink: {{type: kafka, topic: ves.deletes, format: ves}}
  - name: ves-other-vim
    match: {{vims: [somewhere_else], phases: {ALL_PHASES}}}
    sink: {{type: kafka, topic: ves.other, format: ves}}
  - name: json-power
    match: {{events: [POWER_OFF]}}
    sink: {{type: kafka, topic: power.json}}
"""
)


@cache
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    return validator_cls(schema)


def assert_valid_ves(document: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator().iter_errors(document)]
    assert not errors, errors
    # The schema requires no top-level key nor a domain block: eventfed always sends both.
    event = document["event"]
    domain = event["commonEventHeader"]["domain"]
    assert set(event) == {"commonEventHeader", f"{domain}Fields"}


class Harness:
    def __init__(self, subscriptions=SUBS) -> None:
        self.processor = pipeline.Processor(pipeline.Topics("events", "dlq"), lambda: subscriptions, 600)
        self.state: dict[bytes, dict] = {}
        self.offset = 0

    def restart(self) -> None:
        """A new worker (after a restart or a rebalance) with the same state store."""
        self.processor = pipeline.Processor(pipeline.Topics("events", "dlq"), lambda: SUBS, 600)

    def feed(self, record: dict | bytes, offset: int | None = None) -> pipeline.Outcome:
        if offset is None:
            self.offset += 1
            offset = self.offset
        body = record if isinstance(record, bytes) else json.dumps(record).encode()
        outcome = self.processor.process(
            b"k", body, pipeline.Source("raw", 0, offset), self.state.get, 1000.0
        )
        if outcome.new_state is not None:
            self.state[outcome.state_key] = outcome.new_state
        return outcome


def ves_outputs(outcome: pipeline.Outcome, topic: str = "ves.all") -> list[dict[str, Any]]:
    found = []
    for output in outcome.outputs:
        if output.topic == topic:
            assert dict(output.headers)["content-type"] == pipeline.CONTENT_TYPES["ves"]
            document = json.loads(output.value)
            assert_valid_ves(document)
            found.append(document)
    return found


def only_ves(outcome: pipeline.Outcome, topic: str = "ves.all") -> dict[str, Any]:
    found = ves_outputs(outcome, topic)
    assert len(found) == 1, outcome
    return found[0]


def fault_of(document: dict[str, Any]) -> tuple[str, str, str, str]:
    header = document["event"]["commonEventHeader"]
    fields = document["event"]["faultFields"]
    return header["eventName"], fields["eventSeverity"], fields["specificProblem"], header["eventId"]


class Vm:
    """One simulated VM whose notifications are raw records for the harness."""

    def __init__(self, seed: int = 3, index: int = 0, fmt: str = "versioned") -> None:
        self.cloud = SimulatedCloud(seed=seed)
        self.vm = self.cloud.new_vm(index)
        self.fmt = fmt

    def record(self, action: str, phase: str, vm_state: str | None = None) -> dict[str, Any]:
        if vm_state is not None:
            self.vm.vm_state = vm_state
        note = self.cloud.action(self.vm, action, phase, self.fmt)
        return raw_record(note, VIM, self.cloud.tick())


# --- the API status -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vm_state", "task_state", "status"),
    [
        ("active", None, "ACTIVE"),
        ("active", "rebooting", "REBOOT"),
        ("active", "reboot_started_hard", "HARD_REBOOT"),
        ("active", "migrating", "MIGRATING"),
        ("active", "updating_password", "PASSWORD"),
        ("active", "rebuild_spawning", "REBUILD"),
        ("active", "resize_migrating", "RESIZE"),
        ("active", "powering-off", "ACTIVE"),
        ("building", "spawning", "BUILD"),
        ("stopped", None, "SHUTOFF"),
        ("stopped", "powering-on", "SHUTOFF"),
        ("stopped", "resize_prep", "RESIZE"),
        ("resized", None, "VERIFY_RESIZE"),
        ("resized", "resize_reverting", "REVERT_RESIZE"),
        ("paused", None, "PAUSED"),
        ("suspended", None, "SUSPENDED"),
        ("rescued", None, "RESCUE"),
        ("error", None, "ERROR"),
        ("error", "rebooting_hard", "ERROR"),
        ("error", "rebuilding", "REBUILD"),
        ("deleted", None, "DELETED"),
        ("soft-delete", None, "SOFT_DELETED"),
        ("shelved", None, "SHELVED"),
        ("shelved_offloaded", None, "SHELVED_OFFLOADED"),
        ("exploded", None, None),
        (None, None, None),
    ],
)
def test_api_status_of_nova_states(vm_state, task_state, status):
    assert ves.api_status(vm_state, task_state) == status


# --- the alarm through the processor ------------------------------------------------------------


def faults(outcome: pipeline.Outcome, topic: str = "ves.all") -> list[dict[str, Any]]:
    return [d for d in ves_outputs(outcome, topic) if d["event"]["commonEventHeader"]["domain"] == "fault"]


def only_fault(outcome: pipeline.Outcome, topic: str = "ves.all") -> dict[str, Any]:
    found = faults(outcome, topic)
    assert len(found) == 1, [fault_of(d) for d in found]
    return found[0]


def state_change(outcome: pipeline.Outcome, topic: str = "ves.all") -> dict[str, Any]:
    found = [
        d for d in ves_outputs(outcome, topic) if d["event"]["commonEventHeader"]["domain"] == "stateChange"
    ]
    assert len(found) == 1, outcome
    return found[0]


def names_of(outcome: pipeline.Outcome, topic: str = "ves.all") -> list[str]:
    return [fault_of(d)[0] for d in faults(outcome, topic)]


def test_power_off_raises_and_power_on_clears_with_the_same_event_id():
    h, vm = Harness(), Vm()
    created = h.feed(vm.record("create", "end"))
    assert faults(created) == []
    assert state_change(created)["event"]["stateChangeFields"]["newState"] == "inService"

    outcome = h.feed(vm.record("power_off", "end"))
    raised = only_fault(outcome)
    header = raised["event"]["commonEventHeader"]
    fields = raised["event"]["faultFields"]
    assert fault_of(raised)[:3] == ("Fault_MultiCloud_VMFailure", "CRITICAL", "AlarmOn")
    assert header["domain"] == "fault" and header["priority"] == "High"
    assert header["sourceId"] == vm.vm.uuid and header["sourceName"] == vm.vm.display_name
    assert header["reportingEntityName"] == VIM
    assert header["version"] == "4.1" and header["vesEventListenerVersion"] == "7.2.1"
    assert fields["alarmCondition"] == "Guest_Os_Failure"
    assert fields["eventSourceType"] == "virtualMachine" and fields["vfStatus"] == "Active"
    assert fields["alarmAdditionalInformation"]["apiStatus"] == "SHUTOFF"
    assert fields["alarmAdditionalInformation"]["oldApiStatus"] == "ACTIVE"
    # The fault, then the event's own stateChange, one sequence number each.
    documents = ves_outputs(outcome)
    assert [d["event"]["commonEventHeader"]["domain"] for d in documents] == ["fault", "stateChange"]
    assert documents[1]["event"]["commonEventHeader"]["sequence"] == header["sequence"] + 1
    assert documents[1]["event"]["stateChangeFields"]["newState"] == "outOfService"

    state = h.state[f"{VIM}/{vm.vm.uuid}".encode()]
    assert state[META]["alarm"] == {
        "event_id": header["eventId"],
        "raised_at": header["startEpochMicrosec"],
        "severity": "CRITICAL",
        "source_name": vm.vm.display_name,
    }

    assert faults(h.feed(vm.record("power_on", "start"))) == []

    cleared = only_fault(h.feed(vm.record("power_on", "end")))
    clear_header = cleared["event"]["commonEventHeader"]
    assert fault_of(cleared) == ("Fault_MultiCloud_VMFailureCleared", "NORMAL", "AlarmOff", header["eventId"])
    assert cleared["event"]["faultFields"]["alarmCondition"] == "Vm_Restart"
    assert clear_header["priority"] == "Normal"
    assert clear_header["startEpochMicrosec"] == header["startEpochMicrosec"]
    assert clear_header["lastEpochMicrosec"] > header["lastEpochMicrosec"]
    assert "alarm" not in h.state[f"{VIM}/{vm.vm.uuid}".encode()][META]


def test_a_failure_raises_once_per_episode_and_a_new_episode_has_a_new_event_id():
    h, vm = Harness(), Vm()
    h.feed(vm.record("create", "end"))
    first = fault_of(only_fault(h.feed(vm.record("pause", "end"))))
    still_down = h.feed(vm.record("power_off", "end"))
    assert faults(still_down) == []
    assert state_change(still_down)["event"]["stateChangeFields"]["oldState"] == "outOfService"
    assert fault_of(only_fault(h.feed(vm.record("power_on", "end"))))[3] == first[3]
    second = fault_of(only_fault(h.feed(vm.record("suspend", "end"))))
    assert second[2] == "AlarmOn" and second[3] != first[3]


def test_a_failed_reboot_of_a_running_vm_is_an_action_failure_not_a_vm_failure():
    h, vm = Harness(), Vm()
    h.feed(vm.record("create", "end"))
    assert faults(h.feed(vm.record("reboot", "start"))) == []
    failed = only_fault(h.feed(vm.record("reboot", "error")))
    header = failed["event"]["commonEventHeader"]
    fields = failed["event"]["faultFields"]
    assert fault_of(failed)[:3] == ("Fault_eventfed_VmActionFailed", "MAJOR", "REBOOT failed")
    assert header["priority"] == "Medium" and fields["alarmCondition"] == "Vm_Action_Failed"
    assert header["eventId"] == f"{VIM}/{vm.vm.uuid}/failed/REBOOT/{header['startEpochMicrosec']}"
    assert fields["alarmAdditionalInformation"]["apiStatus"] == "ACTIVE"
    assert fields["alarmAdditionalInformation"]["failedAction"] == "REBOOT"
    # Raised once: a second failure of the running VM says nothing more; another action's success
    # does not clear it, the reboot's does.
    assert faults(h.feed(vm.record("reboot", "error"))) == []
    assert faults(h.feed(vm.record("rebuild", "end"))) == []
    cleared = only_fault(h.feed(vm.record("reboot", "end")))
    assert fault_of(cleared) == (
        "Fault_eventfed_VmActionFailedCleared",
        "NORMAL",
        "AlarmOff",
        header["eventId"],
    )
    assert "action_alarm" not in h.state[f"{VIM}/{vm.vm.uuid}".encode()][META]


def test_an_action_that_fails_into_error_raises_the_vm_failure():
    h, vm = Harness(), Vm()
    h.feed(vm.record("create", "end"))
    h.feed(vm.record("rebuild", "start"))
    raised = only_fault(h.feed(vm.record("rebuild", "error", vm_state="error")))
    assert fault_of(raised)[:3] == ("Fault_MultiCloud_VMFailure", "CRITICAL", "AlarmOn")
    assert raised["event"]["faultFields"]["alarmAdditionalInformation"]["apiStatus"] == "ERROR"
    cleared = only_fault(h.feed(vm.record("rebuild", "end", vm_state="active")))
    assert fault_of(cleared)[2:] == ("AlarmOff", fault_of(raised)[3])


def test_a_failed_delete_of_a_running_vm_is_an_action_failure_its_end_clears():
    h, vm = Harness(), Vm()
    h.feed(vm.record("create", "end"))
    h.feed(vm.record("delete", "start"))
    assert names_of(h.feed(vm.record("delete", "error"))) == ["Fault_eventfed_VmActionFailed"]
    assert names_of(h.feed(vm.record("delete", "end"))) == ["Fault_eventfed_VmActionFailedCleared"]


@pytest.mark.parametrize(
    "action", ["rebuild", "reboot", "power_off", "pause", "suspend", "soft_delete", "delete"]
)
def test_no_vm_failure_while_a_deliberate_action_is_in_progress(action):
    h, vm = Harness(), Vm()
    h.feed(vm.record("create", "end"))
    # The start, and Nova's update notifications while the action runs (task_state set).
    assert faults(h.feed(vm.record(action, "start"))) == []
    assert faults(h.feed(vm.record(action, "start", vm_state="stopped"))) == []


def test_a_rebuild_or_resize_status_is_no_failure_by_default_but_is_under_the_multicloud_rule():
    subs = load_subscriptions(
        f"""
subscriptions:
  - name: default
    match: {{phases: {ALL_PHASES}}}
    sink: {{type: kafka, topic: ves.default, format: ves}}
  - name: multicloud
    match: {{phases: {ALL_PHASES}}}
    sink: {{type: kafka, topic: ves.multicloud, format: ves, ves: {{failure_statuses: multicloud}}}}
"""
    )
    h, vm = Harness(subs), Vm()
    h.feed(vm.record("create", "end"))
    started = h.feed(vm.record("rebuild", "start"))
    assert faults(started, "ves.default") == []
    literal = only_fault(started, "ves.multicloud")
    assert fault_of(literal)[:3] == ("Fault_MultiCloud_VMFailure", "CRITICAL", "AlarmOn")
    assert literal["event"]["faultFields"]["alarmAdditionalInformation"]["failureRule"] == "multicloud"
    ended = h.feed(vm.record("rebuild", "end"))
    assert faults(ended, "ves.default") == []
    assert fault_of(only_fault(ended, "ves.multicloud"))[2:] == ("AlarmOff", fault_of(literal)[3])
    # Both rules agree on a VM that is down, and number its events alike.
    off = h.feed(vm.record("power_off", "end"))
    default_raise, literal_raise = only_fault(off, "ves.default"), only_fault(off, "ves.multicloud")
    assert fault_of(default_raise) == fault_of(literal_raise)
    assert state_change(off, "ves.default") == state_change(off, "ves.multicloud")


def test_create_error_raises_for_a_new_vm():
    h, vm = Harness(), Vm()
    raised = only_fault(h.feed(vm.record("create", "error", vm_state="error")))
    assert fault_of(raised)[:3] == ("Fault_MultiCloud_VMFailure", "CRITICAL", "AlarmOn")
    assert raised["event"]["commonEventHeader"]["sequence"] == 0


def test_source_name_is_fixed_when_raised_even_if_the_vm_is_renamed():
    h, vm = Harness(), Vm()
    h.feed(vm.record("create", "end"))
    raised = only_fault(h.feed(vm.record("power_off", "end")))
    vm.vm.display_name = "renamed"
    assert faults(h.feed(vm.record("power_off", "end"))) == []
    cleared = only_fault(h.feed(vm.record("power_on", "end")))
    assert raised["event"]["commonEventHeader"]["sourceName"] == "vnf-0000"
    assert cleared["event"]["commonEventHeader"]["sourceName"] == "vnf-0000"
    # The stateChange says what the VM is called now.
    h.feed(vm.record("pause", "end"))
    assert state_change(h.feed(vm.record("unpause", "end")))["event"]["commonEventHeader"]["sourceName"] == (
        "renamed"
    )


def test_event_ids_fit_holmes_and_stay_deterministic_for_a_long_vim_id():
    long_vim = "o" * 100 + "_" + "r" * 99
    h, vm = Harness(), Vm()

    def record(action: str, phase: str) -> dict[str, Any]:
        return {**vm.record(action, phase), "vim_id": long_vim}

    h.feed(record("create", "end"))
    off = record("power_off", "end")
    first = h.feed(off)
    raised = only_fault(first)
    event_id = raised["event"]["commonEventHeader"]["eventId"]
    assert len(event_id) <= 150 and event_id.endswith(
        f"/{vm.vm.uuid}/alarm/{raised['event']['commonEventHeader']['startEpochMicrosec']}"
    )
    assert all(len(d["event"]["commonEventHeader"]["eventId"]) <= 150 for d in ves_outputs(first))
    h.restart()
    assert [o.value for o in h.feed(off, offset=h.offset).outputs] == [o.value for o in first.outputs]
    assert fault_of(only_fault(h.feed(record("power_on", "end"))))[3] == event_id


def test_the_alarm_survives_a_restart_and_a_replay_is_encoded_as_first_written():
    h, vm = Harness(), Vm()
    h.feed(vm.record("create", "end"))
    off = vm.record("power_off", "end")
    first = h.feed(off)
    raised = only_fault(first)
    h.restart()
    replayed = h.feed(off, offset=h.offset)
    assert replayed.kind == pipeline.REPLAYED
    assert [o.value for o in replayed.outputs] == [o.value for o in first.outputs]
    # The new worker knows the alarm from the state alone: no second raise, and the clear pairs.
    assert faults(h.feed(vm.record("power_off", "end"))) == []
    h.restart()
    cleared = only_fault(h.feed(vm.record("power_on", "end")))
    assert fault_of(cleared)[2:] == ("AlarmOff", fault_of(raised)[3])


def test_raise_and_clear_reach_a_ves_feed_whatever_its_event_filter_but_not_another_vims():
    h, vm = Harness(), Vm()
    assert ves_outputs(h.feed(vm.record("create", "end")), "ves.deletes") == []
    raised = h.feed(vm.record("power_off", "end"))
    assert fault_of(only_ves(raised, "ves.deletes"))[2] == "AlarmOn"
    assert "json-power" in raised.matched and "ves-other-vim" not in raised.matched
    assert ves_outputs(h.feed(vm.record("power_on", "start")), "ves.deletes") == []
    assert fault_of(only_ves(h.feed(vm.record("power_on", "end")), "ves.deletes"))[2] == "AlarmOff"
    assert ves_outputs(h.feed(vm.record("reboot", "end")), "ves.deletes") == []


def test_a_feed_limited_to_faults_or_to_state_changes_carries_only_that_domain():
    subs = load_subscriptions(
        f"""
subscriptions:
  - name: faults
    match: {{phases: {ALL_PHASES}}}
    sink: {{type: kafka, topic: ves.faults, format: ves, ves: {{domains: [fault]}}}}
  - name: changes
    match: {{phases: {ALL_PHASES}}}
    sink: {{type: kafka, topic: ves.changes, format: ves, ves: {{domains: [stateChange]}}}}
"""
    )
    processor = pipeline.Processor(
        pipeline.Topics("events", "dlq"), lambda: subs, 600, stuck_after={"REBOOT": 60}
    )
    h, vm = Harness(subs), Vm()
    h.processor = processor
    created = h.feed(vm.record("create", "end"))
    assert ves_outputs(created, "ves.faults") == [] and "faults" not in created.matched
    assert state_change(created, "ves.changes")
    off = h.feed(vm.record("power_off", "end"))
    assert names_of(off, "ves.faults") == ["Fault_MultiCloud_VMFailure"]
    assert len(ves_outputs(off, "ves.faults")) == 1
    assert [d["event"]["commonEventHeader"]["domain"] for d in ves_outputs(off, "ves.changes")] == [
        "stateChange"
    ]
    h.feed(vm.record("power_on", "end"))
    # A stuck action is an alarm: on the faults feed only.
    h.feed(vm.record("reboot", "start"))
    key = f"{VIM}/{vm.vm.uuid}".encode()
    stuck = processor.expire(key, h.state[key], 10_000_000_000.0)
    assert stuck is not None
    topics = [o.topic for o in stuck.outputs]
    assert "ves.faults" in topics and "ves.changes" not in topics


def test_a_ves_feed_rejects_unknown_domains_and_rules():
    for bad in ("domains: [faults]", "domains: []", "failure_statuses: literal"):
        with pytest.raises(SubscriptionError) as caught:
            load_subscriptions(GOOD_VES_FEED + f"        {bad}\n", "subs.yaml")
        assert "subscriptions/0/sink/ves/" in str(caught.value)


def test_stale_events_neither_reach_a_ves_feed_nor_move_the_alarm():
    h, vm = Harness(), Vm()
    h.feed(vm.record("create", "end"))
    late_off = vm.record("power_off", "end")
    h.feed(vm.record("power_on", "end"))
    outcome = h.feed(late_off)
    assert outcome.kind == pipeline.STALE and ves_outputs(outcome) == []
    assert "alarm" not in h.state[f"{VIM}/{vm.vm.uuid}".encode()][META]


def test_an_event_without_an_api_status_is_dead_lettered_with_its_reason():
    h, vm = Harness(), Vm()
    h.feed(vm.record("create", "end"))
    outcome = h.feed(vm.record("reboot", "error", vm_state="exploded"))
    assert outcome.kind == pipeline.DEAD and outcome.reason == "ves_unknown_vm_state"
    (dead,) = outcome.outputs
    assert dead.topic == "dlq" and b"exploded" in dict(dead.headers)[dead_letter.HEADER_ERROR]
    assert dict(dead.headers)[dead_letter.HEADER_REASON] == b"ves_unknown_vm_state"
    # The worker goes on: the VM's next event is applied.
    assert h.feed(vm.record("reboot", "end", vm_state="active")).kind == pipeline.APPLIED


def test_without_a_ves_feed_unknown_states_flow_and_the_alarm_is_still_kept():
    subs = load_subscriptions("subscriptions:\n  - {name: all, sink: {type: kafka, topic: all.json}}\n")
    h, vm = Harness(subs), Vm()
    h.feed(vm.record("create", "end"))
    assert h.feed(vm.record("reboot", "error", vm_state="exploded")).kind == pipeline.APPLIED
    h.feed(vm.record("power_off", "end", vm_state="active"))
    assert "alarm" in h.state[f"{VIM}/{vm.vm.uuid}".encode()][META]


# --- every output valid, over many generated lifecycles -----------------------------------------

_ACTIONS = ("power_off", "power_on", "pause", "unpause", "suspend", "resume", "reboot", "rebuild")
# The default rule's failures, written out here rather than taken from the code under test.
DOWN = {"ERROR", "SHUTOFF", "PAUSED", "SUSPENDED", "RESCUE", "SHELVED", "SHELVED_OFFLOADED", "SOFT_DELETED"}


def random_life(rng: random.Random, index: int) -> Iterator[tuple[Vm, dict[str, Any]]]:
    vm = Vm(seed=index, index=index, fmt=rng.choice(("legacy", "versioned")))
    yield vm, vm.record("create", rng.choice(("end", "end", "end", "error")))
    for _ in range(rng.randint(3, 25)):
        action = rng.choice(_ACTIONS)
        phase = rng.choice(("start", "end", "end", "error"))
        vm_state = "error" if phase == "error" and rng.random() < 0.3 else None
        if phase == "end" and vm.vm.vm_state == "error":
            vm_state = "active"
        yield vm, vm.record(action, phase, vm_state)
    if rng.random() < 0.5:
        yield vm, vm.record("delete", "end")


def test_generated_lifecycles_give_valid_ves_and_alarms_that_follow_the_vm():
    rng = random.Random(20261129)
    counts = {"raise": 0, "clear": 0, "failed": 0, "failed_clear": 0, "none": 0}
    for index in range(120):
        h = Harness()
        open_alarm: str | None = None
        failed_action: str | None = None
        used_ids: set[str] = set()
        settled_down = False
        for vm, record in random_life(rng, index):
            outcome = h.feed(record)
            assert outcome.kind == pipeline.APPLIED
            event = outcome.event
            assert event is not None
            phase = event["phase"]
            status = ves.api_status(event["state"], None if phase == "error" else event["task_state"])
            at_rest = phase == "error" or (phase != "start" and not event["task_state"])
            if status == "DELETED":
                settled_down = False
            elif at_rest:
                settled_down = status in DOWN
            documents = ves_outputs(outcome)
            assert [d["event"]["commonEventHeader"]["domain"] for d in documents][-1] == "stateChange"
            sequences = [d["event"]["commonEventHeader"]["sequence"] for d in documents]
            assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
            for document in faults(outcome):
                name, severity, _, event_id = fault_of(document)
                if name == "Fault_MultiCloud_VMFailure":
                    assert at_rest and status in DOWN and open_alarm is None and event_id not in used_ids
                    assert severity == "CRITICAL"
                    open_alarm = event_id
                    used_ids.add(event_id)
                    counts["raise"] += 1
                elif name == "Fault_MultiCloud_VMFailureCleared":
                    assert event_id == open_alarm and not settled_down
                    open_alarm = None
                    counts["clear"] += 1
                elif name == "Fault_eventfed_VmActionFailed":
                    assert phase == "error" and status not in DOWN and failed_action is None
                    failed_action = event_id
                    counts["failed"] += 1
                else:
                    assert name == "Fault_eventfed_VmActionFailedCleared" and event_id == failed_action
                    failed_action = None
                    counts["failed_clear"] += 1
            if not faults(outcome):
                counts["none"] += 1
            # The VM failure alarm stands exactly while the VM's last settled status is down.
            assert (open_alarm is not None) == settled_down
            assert documents[-1]["event"]["commonEventHeader"]["sourceId"] == vm.vm.uuid
    assert min(counts.values()) > 20, counts


@pytest.mark.parametrize("path", nova_samples.all_files(), ids=nova_samples.sample_id)
def test_real_nova_samples_map_to_valid_ves(path):
    event = normalise(nova_samples.load(path), vim_id=VIM_ID, received_at=RECEIVED_AT)
    if event is None:
        pytest.skip("not a status event")
    event_json = codecs.event_to_json_dict(event)
    healthy_before = {**event_json, "state": "active", "task_state": None, META: {}}
    failed_before = {
        **healthy_before,
        "state": "stopped",
        META: ves.step_to_meta(
            ves.next_step(
                {**event_json, "state": "stopped", "phase": "end", "status": "POWER_OFF", "task_state": None},
                None,
                META,
            )
        ),
    }
    assert ves.step_from_meta(failed_before[META]).alarm is not None  # type: ignore[union-attr]
    for previous in (None, healthy_before, failed_before):
        step = ves.next_step(event_json, previous, META)
        for rule in ves.FAILURE_RULES.values():
            documents = [
                *(json.loads(f) for f in ves.encode_faults(event_json, step, rule)),
                json.loads(ves.encode_state_change(event_json, step)),
            ]
            for document in documents:
                assert_valid_ves(document)
                assert document["event"]["commonEventHeader"]["sourceId"] == event["instance_id"]
        assert ves.step_from_meta(ves.step_to_meta(step)) == step


# --- subscriptions ------------------------------------------------------------------------------


GOOD_VES_FEED = """subscriptions:
  - name: alarms
    sink:
      type: kafka
      topic: unauthenticated.eventfed.vm.ves
      format: ves
      ves:
        reporting_entity_name: eventfed-east
"""


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (
            ("reporting_entity_name", "reporting_entity"),
            "subs.yaml:8: subscriptions/0/sink/ves",
            "reporting_entity",
        ),
        (("eventfed-east", '""'), "subs.yaml:8: subscriptions/0/sink/ves/reporting_entity_name", "non-empty"),
        (
            ("format: ves", "format: json"),
            "subs.yaml:6: subscriptions/0/sink/format",
            "is not one of ['ves', 'ves-measurement']",
        ),
        (("format: ves", "format: vess"), "subs.yaml:6: subscriptions/0/sink/format", "'vess' is not one of"),
    ],
)
def test_a_ves_sink_with_a_bad_option_is_rejected_naming_file_line_and_field(change, where, message):
    (feed,) = load_subscriptions(GOOD_VES_FEED)
    assert feed.sink.format == "ves" and feed.sink.ves_reporting_entity == "eventfed-east"
    with pytest.raises(SubscriptionError) as caught:
        load_subscriptions(GOOD_VES_FEED.replace(*change), "subs.yaml")
    assert str(caught.value).startswith(where + ": ") and message in str(caught.value)


def test_the_reporting_entity_option_names_the_reporter_of_that_feed_only():
    subs = [*load_subscriptions(GOOD_VES_FEED), *SUBS]
    h, vm = Harness(subs), Vm()
    outcome = h.feed(vm.record("create", "end"))
    named = only_ves(outcome, "unauthenticated.eventfed.vm.ves")
    assert named["event"]["commonEventHeader"]["reportingEntityName"] == "eventfed-east"
    assert only_ves(outcome)["event"]["commonEventHeader"]["reportingEntityName"] == VIM


def test_the_example_subscriptions_split_faults_from_state_changes():
    example = Path(__file__).resolve().parents[3] / "config" / "subscriptions.example.yaml"
    feeds = [s for s in load_subscriptions(example.read_text()) if s.sink.format == "ves"]
    assert [(s.sink.topic, sorted(s.sink.ves_domains)) for s in feeds] == [
        ("unauthenticated.SEC_FAULT_OUTPUT", ["fault"]),
        ("unauthenticated.eventfed.vm.statechange", ["stateChange"]),
    ]


# --- eventfed decode ----------------------------------------------------------------------------


def test_decode_shows_a_ves_record_by_detection_and_by_format(tmp_path, capsys):
    h, vm = Harness(), Vm()
    h.feed(vm.record("create", "end"))
    record, _ = [o.value for o in h.feed(vm.record("power_off", "end")).outputs if o.topic == "ves.all"]
    path = tmp_path / "ves.json"
    path.write_bytes(record)
    for args in (["decode", str(path)], ["decode", str(path), "--format", "ves"]):
        assert main(args) == 0
        out, _ = capsys.readouterr()
        assert json.loads(out) == json.loads(record)
        assert out.count("\n") > 10  # pretty-printed
    event_path = tmp_path / "event.json"
    event_path.write_bytes(codecs.encode_json(normalise(vm.record("power_on", "end"))))  # type: ignore[arg-type]
    assert main(["decode", str(event_path), "--format", "ves"]) == 1
    assert "not a VES event" in capsys.readouterr().err
    assert main(["decode", str(event_path)]) == 0
    assert json.loads(capsys.readouterr().out)["instance_id"] == vm.vm.uuid


def test_a_state_written_before_ves_bookkeeping_starts_without_an_alarm():
    h, vm = Harness(), Vm()
    h.feed(vm.record("create", "end"))
    key = f"{VIM}/{vm.vm.uuid}".encode()
    h.state[key][META] = {k: v for k, v in h.state[key][META].items() if k in ("version", "source")}
    raised = only_fault(h.feed(vm.record("power_off", "end")))
    assert fault_of(raised)[2] == "AlarmOn"
    assert raised["event"]["commonEventHeader"]["sequence"] == 0
    assert ves.next_step({"state": "active", "phase": "end"}, {"state": "stopped", META: "junk"}, META) == (
        ves.Step(ves.NONE, None, "SHUTOFF", 0)
    )
