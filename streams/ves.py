"""VM status events as VES 7.x events (ONAP's Common Event Format). Pure: no I/O, no clock.

Three alarms, each a VES fault raised once per episode and cleared with the raise's eventId:
- `Fault_MultiCloud_VMFailure`, the name ONAP's Holmes VM-failure rule turns into a restart or
  rebuild order for Policy, whatever its severity. So it means one thing only: the VM is down. It is
  raised when the VM settles in a failure status (`FailureRule`) with no action in progress, never
  while a deliberate action runs, and never for a VM Nova reports healthy; it clears when the VM
  settles healthy or is deleted.
- `Fault_eventfed_VmActionFailed`: an action's `.error` that leaves the VM healthy (a failed reboot
  of a running VM). Holmes rules for VM failure never see it; the next `.end` of the same kind (the
  action succeeding) or the VM deleted clears it.
- `Fault_eventfed_VmActionStuck` (streams.stuck): an action with no end in time.
Every event is also a `stateChange`, for the feeds that carry that domain.

The alarms are VM state, not worker state: `next_step` decides from the VM's previous state record,
and the step it returns is written into the new state record (`step_to_meta`), so a restart or a
partition moving to another worker neither repeats a raise nor forgets a clear, and a replayed
record is encoded exactly as it first was (`step_from_meta`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, NamedTuple

import orjson

from schemas.api_status import API_STATUS, api_status
from schemas.state import AlarmRecord, Bookkeeping, StepRecord
from streams.event_ids import bounded_event_id
from streams.stuck import Pending, stuck_event_id

ALL_STATUSES: Final = frozenset(
    status for default, by_task in API_STATUS.values() for status in (default, *by_task.values())
)
DELETED_STATUS: Final = "DELETED"
# Multicloud's fault_vm.py: any other API status is a VM failure.
MULTICLOUD_HEALTHY_STATUSES: Final = frozenset(
    {"BUILD", "ACTIVE", "HARD_REBOOT", "REBOOT", "MIGRATING", "PASSWORD"}
)
# A VM that is down: Multicloud's failures less the statuses a deliberate action passes through
# (REBUILD, RESIZE, VERIFY_RESIZE, REVERT_RESIZE), which a closed loop must not answer with a
# restart, and less DELETED, which an operator asked for.
DEFAULT_FAILURE_STATUSES: Final = frozenset(
    {"ERROR", "SHUTOFF", "PAUSED", "SUSPENDED", "RESCUE", "SHELVED", "SHELVED_OFFLOADED", "SOFT_DELETED"}
)


@dataclass(frozen=True, slots=True)
class FailureRule:
    """Which API statuses are a VM failure, and whether one counts while an action is in progress.

    name                 the `failure_statuses` option of a ves feed; also its key in the state
    failures             the statuses that raise `Fault_MultiCloud_VMFailure`
    while_in_progress    raise (and clear) on the status of the moment, as Multicloud's poller did,
                         instead of waiting for the VM to settle
    """

    name: str
    failures: frozenset[str]
    while_in_progress: bool


DEFAULT_RULE: Final = FailureRule("default", DEFAULT_FAILURE_STATUSES, False)
MULTICLOUD_RULE: Final = FailureRule(
    "multicloud", ALL_STATUSES - MULTICLOUD_HEALTHY_STATUSES - {DELETED_STATUS}, True
)
FAILURE_RULES: Final[Mapping[str, FailureRule]] = {r.name: r for r in (DEFAULT_RULE, MULTICLOUD_RULE)}

# stateChangeFields only knows three service states.
_IN_SERVICE: Final = frozenset({"ACTIVE", "PASSWORD"})
_MAINTENANCE: Final = frozenset(
    {"BUILD", "REBOOT", "HARD_REBOOT", "MIGRATING", "REBUILD", "RESIZE", "VERIFY_RESIZE", "REVERT_RESIZE"}
)

RAISE_EVENT_NAME: Final = "Fault_MultiCloud_VMFailure"
CLEAR_EVENT_NAME: Final = "Fault_MultiCloud_VMFailureCleared"
STATE_CHANGE_EVENT_NAME: Final = "stateChange_eventfed_VmStatus"
STUCK_EVENT_NAME: Final = "Fault_eventfed_VmActionStuck"
STUCK_CLEAR_EVENT_NAME: Final = "Fault_eventfed_VmActionStuckCleared"
STUCK_CONDITION: Final = "Vm_Action_Stuck"
ACTION_FAILED_EVENT_NAME: Final = "Fault_eventfed_VmActionFailed"
ACTION_FAILED_CLEAR_EVENT_NAME: Final = "Fault_eventfed_VmActionFailedCleared"
ACTION_FAILED_CONDITION: Final = "Vm_Action_Failed"
FAULT_DOMAIN: Final = "fault"
STATE_CHANGE_DOMAIN: Final = "stateChange"
DOMAINS: Final = frozenset({FAULT_DOMAIN, STATE_CHANGE_DOMAIN})
HEADER_VERSION: Final = "4.1"
LISTENER_VERSION: Final = "7.2.1"
FIELDS_VERSION: Final = "4.0"
SOURCE_TYPE: Final = "virtualMachine"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

CRITICAL: Final = "CRITICAL"
MAJOR: Final = "MAJOR"
NORMAL: Final = "NORMAL"
_PRIORITY: Final = {CRITICAL: "High", MAJOR: "Medium", NORMAL: "Normal"}

RAISE: Final = "raise"
CLEAR: Final = "clear"
NONE: Final = "none"
Transition = Literal["raise", "clear", "none"]


class VesMappingError(ValueError):
    """The event cannot be expressed as a VES event; `reason` is stable (a dead-letter header)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Alarm:
    """A raised alarm: its eventId, when it was raised, its severity, the sourceName it was raised
    under (repeated on every re-raise and on the clear, so that a rename or a notification without
    the name does not break ONAP's pairing) and, for a failed action, the kind whose success clears it.
    """

    event_id: str
    raised_at: int  # epoch microseconds of the event that raised it
    severity: str
    source_name: str | None = None
    kind: str | None = None

    def as_dict(self) -> AlarmRecord:
        written: AlarmRecord = {
            "event_id": self.event_id,
            "raised_at": self.raised_at,
            "severity": self.severity,
        }
        if self.source_name is not None:
            written["source_name"] = self.source_name
        if self.kind is not None:
            written["kind"] = self.kind
        return written

    @classmethod
    def from_dict(cls, value: Any) -> Alarm | None:
        # None and dict first: the ABC check costs, and this runs on every event.
        if value is None or (type(value) is not dict and not isinstance(value, Mapping)):
            return None
        event_id, raised_at, severity = value.get("event_id"), value.get("raised_at"), value.get("severity")
        if not isinstance(event_id, str) or type(raised_at) is not int or severity not in _PRIORITY:
            return None
        source_name, kind = value.get("source_name"), value.get("kind")
        return cls(
            event_id,
            raised_at,
            severity,
            source_name if isinstance(source_name, str) and source_name else None,
            kind if isinstance(kind, str) and kind else None,
        )


class Step(NamedTuple):
    """What one applied event did to its VM's alarms, and what the VES encoding of it needs. A
    named tuple: as immutable as a frozen dataclass, made in half the time (twice per event).

    transition, alarm      the VM failure under the default rule: for raise and none, the alarm
                           standing after the event (None: no alarm); for clear, the alarm it cleared
    old_status             the VM's API status before the event (None: unknown, e.g. a new VM)
    sequence               the VES `sequence` of the event's stateChange; the faults it raised or
                           cleared take the numbers just before it (`fault_sequences`)
    multicloud, multicloud_alarm   the VM failure under Multicloud's literal rule
    action, action_alarm   the failed-action alarm
    """

    transition: Transition
    alarm: Alarm | None
    old_status: str | None
    sequence: int
    multicloud: Transition = NONE
    multicloud_alarm: Alarm | None = None
    action: Transition = NONE
    action_alarm: Alarm | None = None

    @property
    def standing_alarm(self) -> Alarm | None:
        return None if self.transition == CLEAR else self.alarm

    @property
    def standing_action_alarm(self) -> Alarm | None:
        return None if self.action == CLEAR else self.action_alarm

    @property
    def standing_multicloud_alarm(self) -> Alarm | None:
        return None if self.multicloud == CLEAR else self.multicloud_alarm

    @property
    def no_alarm_standing(self) -> bool:
        return (
            self.standing_alarm is None
            and self.standing_multicloud_alarm is None
            and self.standing_action_alarm is None
        )

    def failure(self, rule: FailureRule) -> tuple[Transition, Alarm | None]:
        """The VM failure transition and alarm under a rule."""
        if rule.name == DEFAULT_RULE.name:
            return self.transition, self.alarm
        return self.multicloud, self.multicloud_alarm

    @property
    def fault_count(self) -> int:
        """How many sequence numbers the event's faults take: the failed action's, then the VM
        failure's (one for both rules, so that a number means the same event on every feed)."""
        failure_moved = self.transition != NONE or self.multicloud != NONE
        return (self.action != NONE) + failure_moved

    @property
    def moved(self) -> bool:
        return self.transition != NONE or self.multicloud != NONE or self.action != NONE

    @property
    def first_sequence(self) -> int:
        return self.sequence - self.fault_count


def epoch_micros(timestamp: Any) -> int:
    """Epoch microseconds of an event timestamp: a datetime, or the ISO text of the JSON form."""
    if isinstance(timestamp, str):
        try:
            timestamp = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        except ValueError:
            message = f"occurred_at is not ISO 8601: {timestamp!r}"
            raise VesMappingError("ves_bad_timestamp", message) from None
    if not isinstance(timestamp, datetime):
        raise VesMappingError("ves_bad_timestamp", f"occurred_at is not a timestamp: {timestamp!r}")
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    # Integer arithmetic: a float of today's epoch microseconds is not exact.
    return (timestamp - _EPOCH) // timedelta(microseconds=1)


def alarm_event_id(vim_id: str, instance_id: str, raised_at: int) -> str:
    # Deterministic: a replayed raise, and its clear, carry the id of the first one.
    return bounded_event_id(vim_id, f"{instance_id}/alarm/{raised_at}")


def action_failed_event_id(vim_id: str, instance_id: str, kind: str, raised_at: int) -> str:
    return bounded_event_id(vim_id, f"{instance_id}/failed/{kind}/{raised_at}")


def _transition_of(value: Any) -> Transition:
    return value if value in (RAISE, CLEAR) else NONE


def step_from_meta(meta: Any) -> Step | None:
    """The step a state record's event made, as written by `step_to_meta`; None if absent."""
    # dict first: the ABC check costs, and this runs on every event.
    if type(meta) is not dict and not isinstance(meta, Mapping):
        return None
    written = meta.get("ves")
    if type(written) is not dict and not isinstance(written, Mapping):
        return None
    if written.get("transition") not in (RAISE, CLEAR, NONE):
        return None
    sequence = written.get("sequence")
    old_status = written.get("old_status")
    # Present only for a VM that had such an alarm: most have neither.
    multicloud = written.get("multicloud")
    action = written.get("action")
    multicloud_transition: Transition = NONE
    multicloud_alarm = action_alarm = None
    action_transition: Transition = NONE
    if multicloud is not None and isinstance(multicloud, Mapping):
        multicloud_transition = _transition_of(multicloud.get("transition"))
        multicloud_alarm = Alarm.from_dict(multicloud.get("alarm"))
    if action is not None and isinstance(action, Mapping):
        action_transition = _transition_of(action.get("transition"))
        action_alarm = Alarm.from_dict(action.get("alarm"))
    return Step(
        written["transition"],
        Alarm.from_dict(written.get("alarm")),
        old_status if isinstance(old_status, str) else None,
        sequence if type(sequence) is int else 0,
        multicloud_transition,
        multicloud_alarm,
        action_transition,
        action_alarm,
    )


def step_to_meta(step: Step) -> Bookkeeping:
    """The state record's bookkeeping for a step: the standing alarms, and the step itself."""
    written: StepRecord = {
        "transition": step.transition,
        "alarm": step.alarm.as_dict() if step.alarm else None,
        "old_status": step.old_status,
        "sequence": step.sequence,
    }
    # Written only when there is something to say: most VMs never fail, and this is every state.
    if step.multicloud != NONE or step.multicloud_alarm is not None:
        written["multicloud"] = {
            "transition": step.multicloud,
            "alarm": step.multicloud_alarm.as_dict() if step.multicloud_alarm else None,
        }
    if step.action != NONE or step.action_alarm is not None:
        written["action"] = {
            "transition": step.action,
            "alarm": step.action_alarm.as_dict() if step.action_alarm else None,
        }
    meta: Bookkeeping = {"ves": written}
    if step.standing_alarm is not None:
        meta["alarm"] = step.standing_alarm.as_dict()
    if step.standing_action_alarm is not None:
        meta["action_alarm"] = step.standing_action_alarm.as_dict()
    return meta


def next_step(event: Mapping[str, Any], previous_state: Mapping[str, Any] | None, meta_key: str) -> Step:
    """The alarm step of an event, given its VM's state record before it (None: a new VM).

    An event whose vm_state is unknown leaves the alarms as they are: its VES encoding is what
    fails, and only where a `ves` sink asks for it.
    """
    meta = previous_state.get(meta_key) if previous_state else None
    previous = step_from_meta(meta)
    sequence = previous.sequence + 1 if previous else 0
    old_status = (
        api_status(previous_state.get("state"), previous_state.get("task_state")) if previous_state else None
    )
    phase = event.get("phase")
    failed_action = phase == "error"
    task_state = event.get("task_state")
    # An action's error ends it: the VM is left in its vm_state's own status, whatever task_state
    # the notification still carries (a rebuild that fails into `error` is ERROR, not REBUILD).
    status = api_status(event.get("state"), None if failed_action else task_state)
    if (
        (previous is None or previous.no_alarm_standing)
        and not failed_action
        and (status not in MULTICLOUD_RULE.failures)
    ):
        # The common case, decided without the rules: nothing standing to clear, nothing to raise.
        return Step(NONE, None, old_status, sequence)
    settled = not failed_action and phase != "start" and not task_state
    verdict = _Verdict(
        status,
        settled or failed_action,
        not failed_action and (status == DELETED_STATUS or event.get("status") == "DELETE"),
        event,
    )
    transition, alarm = verdict.failure(DEFAULT_RULE, previous.standing_alarm if previous else None)
    multicloud, multicloud_alarm = verdict.failure(
        MULTICLOUD_RULE, previous.standing_multicloud_alarm if previous else None
    )
    action, action_alarm = verdict.action(previous.standing_action_alarm if previous else None)
    step = Step(transition, alarm, old_status, sequence, multicloud, multicloud_alarm, action, action_alarm)
    return step._replace(sequence=sequence + step.fault_count) if step.fault_count else step


class _Verdict:
    """What one event says about its VM, for each alarm to decide on."""

    __slots__ = ("_down_alarm", "at_rest", "deleting", "event", "status")

    def __init__(self, status: str | None, at_rest: bool, deleting: bool, event: Mapping[str, Any]) -> None:
        self.status = status
        # No action in progress: the VM has settled in `status` (or an action just failed).
        self.at_rest = at_rest
        # A deliberate delete (its start, its end), which is no VM failure: the VM being gone
        # clears its alarms, and a delete raises only if it fails (or, in streams.stuck, never ends).
        self.deleting = deleting
        self.event = event
        # The VM failure this event raises: one alarm, whichever rules raise it.
        self._down_alarm: Alarm | None = None

    def _new_alarm(self, severity: str, kind: str | None = None) -> Alarm:
        event = self.event
        raised_at = epoch_micros(event.get("occurred_at"))
        vim_id, instance_id = str(event.get("vim_id")), str(event.get("instance_id"))
        event_id = (
            alarm_event_id(vim_id, instance_id, raised_at)
            if kind is None
            else action_failed_event_id(vim_id, instance_id, kind, raised_at)
        )
        return Alarm(event_id, raised_at, severity, str(event.get("display_name") or instance_id), kind)

    def failure(self, rule: FailureRule, standing: Alarm | None) -> tuple[Transition, Alarm | None]:
        status = self.status
        if status is None:
            return NONE, standing
        if self.deleting:
            if standing is not None and status == DELETED_STATUS:
                return CLEAR, standing
            return NONE, standing
        if not self.at_rest and not rule.while_in_progress:
            return NONE, standing
        if status in rule.failures:
            if standing is None:
                if self._down_alarm is None:
                    self._down_alarm = self._new_alarm(CRITICAL)
                return RAISE, self._down_alarm
            return NONE, standing
        if standing is not None:
            return CLEAR, standing
        return NONE, standing

    def action(self, standing: Alarm | None) -> tuple[Transition, Alarm | None]:
        event = self.event
        if self.status == DELETED_STATUS and self.deleting:
            return (CLEAR, standing) if standing is not None else (NONE, None)
        phase = event.get("phase")
        kind = str(event.get("status") or "")
        if phase == "error":
            # On a VM that is down the VM failure says it; on one Nova does not know, nothing can.
            if standing is not None or self.status is None or self.status in DEFAULT_FAILURE_STATUSES:
                return NONE, standing
            return RAISE, self._new_alarm(MAJOR, kind)
        if standing is not None and phase == "end" and kind == standing.kind:
            return CLEAR, standing
        return NONE, standing


def service_state(status: str | None) -> str:
    if status in _IN_SERVICE:
        return "inService"
    if status in _MAINTENANCE:
        return "maintenance"
    return "outOfService"


def _text_map(values: Mapping[str, Any]) -> dict[str, str]:
    # VES hashMaps carry strings only; an absent value is left out rather than written "None".
    return {k: v if isinstance(v, str) else str(v) for k, v in values.items() if v is not None and v != ""}


def _details(event: Mapping[str, Any], status: str, step: Step, vim_id: str) -> dict[str, str]:
    return _text_map(
        {
            "vimId": vim_id,
            "vmState": event.get("state"),
            "taskState": event.get("task_state"),
            "powerState": event.get("power_state"),
            "apiStatus": status,
            "oldApiStatus": step.old_status,
            "statusKind": event.get("status"),
            "phase": event.get("phase"),
            "eventType": event.get("event_type"),
            "messageId": event.get("message_id"),
            "tenantId": event.get("tenant_id"),
            "host": event.get("host"),
            "faultMessage": (event.get("fault") or {}).get("message"),
        }
    )


def _header(event: Mapping[str, Any], reporting_entity: str | None, sequence: int) -> dict[str, Any]:
    instance_id = str(event["instance_id"])
    return {
        "sourceId": instance_id,
        "sourceName": event.get("display_name") or instance_id,
        "reportingEntityName": reporting_entity or str(event["vim_id"]),
        "sequence": sequence,
        "version": HEADER_VERSION,
        "vesEventListenerVersion": LISTENER_VERSION,
        "timeZoneOffset": "UTC+00.00",
    }


def _status_of(event: Mapping[str, Any]) -> str:
    status = api_status(event.get("state"), event.get("task_state"))
    if status is None:
        raise VesMappingError(
            "ves_unknown_vm_state",
            f"vm_state {event.get('state')!r} has no Nova API status, so no VES fault or state",
        )
    return status


def _alarm_fault(
    event: Mapping[str, Any],
    alarm: Alarm,
    raising: bool,
    sequence: int,
    names: tuple[str, str, str, str, str],
    details: dict[str, str],
    reporting_entity: str | None,
    occurred: int,
) -> dict[str, Any]:
    """A raise or clear of `alarm`: names are the raise's and clear's eventName and
    alarmCondition, and the raise's specificProblem."""
    raise_name, clear_name, raise_condition, clear_condition, problem = names
    severity = alarm.severity if raising else NORMAL
    header = _header(event, reporting_entity, sequence)
    if alarm.source_name:
        header["sourceName"] = alarm.source_name
    header.update(
        domain=FAULT_DOMAIN,
        eventId=alarm.event_id,
        eventName=raise_name if raising else clear_name,
        priority=_PRIORITY[severity],
        startEpochMicrosec=alarm.raised_at,
        lastEpochMicrosec=occurred,
    )
    fields: dict[str, Any] = {
        "alarmCondition": raise_condition if raising else clear_condition,
        "eventSeverity": severity,
        "eventSourceType": SOURCE_TYPE,
        "faultFieldsVersion": FIELDS_VERSION,
        "specificProblem": problem if raising else "AlarmOff",
        "vfStatus": "Active",
        "alarmAdditionalInformation": details,
    }
    return {"event": {"commonEventHeader": header, "faultFields": fields}}


def fault_events(
    event: Mapping[str, Any],
    step: Step,
    rule: FailureRule = DEFAULT_RULE,
    reporting_entity: str | None = None,
    *,
    occurred_micros: int | None = None,
) -> list[dict[str, Any]]:
    """The VES faults an event raised or cleared (its JSON form, and the alarm step it made),
    under a feed's VM failure rule, in sequence order: the failed action's, then the VM failure's.

    reporting_entity names the reporter in the header; by default the event's VIM: Policy and
    Holmes find the vserver in A&AI by its cloud region. occurred_micros: the event's occurred_at
    in epoch µs, when the caller has it (else it is read from the event's ISO text).
    """
    transition, alarm = step.failure(rule)
    acting = step.action != NONE and step.action_alarm is not None
    if not acting and (transition == NONE or alarm is None):
        return []
    status = _status_of(event)
    vim_id = str(event["vim_id"])
    occurred = epoch_micros(event.get("occurred_at")) if occurred_micros is None else occurred_micros
    details = _details(event, status, step, vim_id)
    faults = []
    if acting:
        assert step.action_alarm is not None
        kind = step.action_alarm.kind or str(event.get("status"))
        faults.append(
            _alarm_fault(
                event,
                step.action_alarm,
                step.action == RAISE,
                step.first_sequence,
                (
                    ACTION_FAILED_EVENT_NAME,
                    ACTION_FAILED_CLEAR_EVENT_NAME,
                    ACTION_FAILED_CONDITION,
                    ACTION_FAILED_CONDITION,
                    f"{kind} failed",
                ),
                {**details, "failedAction": kind},
                reporting_entity,
                occurred,
            )
        )
    if transition != NONE and alarm is not None:
        faults.append(
            _alarm_fault(
                event,
                alarm,
                transition == RAISE,
                step.sequence - 1,
                (RAISE_EVENT_NAME, CLEAR_EVENT_NAME, "Guest_Os_Failure", "Vm_Restart", "AlarmOn"),
                {**details, "failureRule": rule.name},
                reporting_entity,
                occurred,
            )
        )
    return faults


def state_change_event(
    event: Mapping[str, Any],
    step: Step,
    reporting_entity: str | None = None,
    *,
    occurred_micros: int | None = None,
) -> dict[str, Any]:
    """The VES stateChange of an event (its JSON form) and the alarm step it made."""
    status = _status_of(event)
    vim_id = str(event["vim_id"])
    occurred = epoch_micros(event.get("occurred_at")) if occurred_micros is None else occurred_micros
    header = _header(event, reporting_entity, step.sequence)
    header.update(
        domain=STATE_CHANGE_DOMAIN,
        eventId=bounded_event_id(vim_id, f"{event['instance_id']}/{step.sequence}"),
        eventName=STATE_CHANGE_EVENT_NAME,
        priority="Normal",
        startEpochMicrosec=occurred,
        lastEpochMicrosec=occurred,
    )
    state_fields = {
        "newState": service_state(status),
        "oldState": service_state(step.old_status if step.old_status is not None else status),
        "stateChangeFieldsVersion": FIELDS_VERSION,
        "stateInterface": SOURCE_TYPE,
        "additionalFields": _details(event, status, step, vim_id),
    }
    return {"event": {"commonEventHeader": header, "stateChangeFields": state_fields}}


def encode_faults(
    event: Mapping[str, Any],
    step: Step,
    rule: FailureRule = DEFAULT_RULE,
    reporting_entity: str | None = None,
    *,
    occurred_micros: int | None = None,
) -> list[bytes]:
    return [
        orjson.dumps(fault)
        for fault in fault_events(event, step, rule, reporting_entity, occurred_micros=occurred_micros)
    ]


def encode_state_change(
    event: Mapping[str, Any],
    step: Step,
    reporting_entity: str | None = None,
    *,
    occurred_micros: int | None = None,
) -> bytes:
    return orjson.dumps(state_change_event(event, step, reporting_entity, occurred_micros=occurred_micros))


def stuck_fault(
    event: Mapping[str, Any],
    pending: Pending,
    raising: bool,
    sequence: int,
    reporting_entity: str | None = None,
) -> dict[str, Any]:
    """The VES fault of a stuck action: raised (`event` is the STUCK event) or cleared (`event` is
    what ended it). An alarm of its own, apart from the VM failure: a stuck action is not a failed
    guest, and Holmes rules written for `Fault_MultiCloud_VMFailure` must not fire on it.
    """
    instance_id = str(event["instance_id"])
    vim_id = str(event["vim_id"])
    severity = MAJOR if raising else NORMAL
    details = _text_map(
        {
            "vimId": vim_id,
            "stuckAction": pending.kind,
            "startEventType": pending.event_type,
            "stuckAfterSeconds": f"{pending.stuck_seconds:g}",
            "vmState": event.get("state"),
            "taskState": event.get("task_state"),
            "powerState": event.get("power_state"),
            "apiStatus": api_status(event.get("state"), event.get("task_state")),
            "statusKind": event.get("status"),
            "phase": event.get("phase"),
            "eventType": None if raising else event.get("event_type"),
            "messageId": None if raising else event.get("message_id"),
            "tenantId": event.get("tenant_id"),
            "host": event.get("host"),
        }
    )
    header: dict[str, Any] = {
        "domain": "fault",
        "eventId": stuck_event_id(vim_id, instance_id, pending),
        "eventName": STUCK_EVENT_NAME if raising else STUCK_CLEAR_EVENT_NAME,
        "priority": _PRIORITY[severity],
        "sourceId": instance_id,
        "sourceName": pending.source_name or event.get("display_name") or instance_id,
        "reportingEntityName": reporting_entity or vim_id,
        "sequence": sequence,
        "startEpochMicrosec": pending.started_at,
        "lastEpochMicrosec": epoch_micros(event.get("occurred_at")),
        "version": HEADER_VERSION,
        "vesEventListenerVersion": LISTENER_VERSION,
        "timeZoneOffset": "UTC+00.00",
    }
    fields: dict[str, Any] = {
        "alarmCondition": STUCK_CONDITION,
        "eventSeverity": severity,
        "eventSourceType": SOURCE_TYPE,
        "faultFieldsVersion": FIELDS_VERSION,
        "specificProblem": f"{pending.kind} has no end",
        "vfStatus": "Active",
        "alarmAdditionalInformation": details,
    }
    return {"event": {"commonEventHeader": header, "faultFields": fields}}


def encode_stuck(
    event: Mapping[str, Any],
    pending: Pending,
    raising: bool,
    sequence: int,
    reporting_entity: str | None = None,
) -> bytes:
    return orjson.dumps(stuck_fault(event, pending, raising, sequence, reporting_entity))
