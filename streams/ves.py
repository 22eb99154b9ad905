"""VM status events as VES 7.x events (ONAP's Common Event Format). Pure: no I/O, no clock.

A VM's failure is an alarm with the semantics of ONAP Multicloud's `Fault_MultiCloud_VMFailure`,
so that Holmes rules and Policy closed loops written for it work unchanged: it is raised once per
episode when the VM's API status leaves the healthy set (or an action fails), and cleared, with the
same eventId, when the VM is healthy again. Every other event is a `stateChange`.

The alarm is VM state, not worker state: `next_step` decides from the VM's previous state record,
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

from streams.stuck import Pending, stuck_event_id

# Nova's API status of a server from its vm_state and task_state (the mapping the servers API
# applies, nova/api/openstack/common.py): the task states listed override the vm_state's default.
_REBOOT = {"rebooting": "REBOOT", "reboot_pending": "REBOOT", "reboot_started": "REBOOT"}
_HARD_REBOOT = {
    "rebooting_hard": "HARD_REBOOT",
    "reboot_pending_hard": "HARD_REBOOT",
    "reboot_started_hard": "HARD_REBOOT",
}
_REBUILD = {
    "rebuilding": "REBUILD",
    "rebuild_block_device_mapping": "REBUILD",
    "rebuild_spawning": "REBUILD",
}
_RESIZE = {
    "resize_prep": "RESIZE",
    "resize_migrating": "RESIZE",
    "resize_migrated": "RESIZE",
    "resize_finish": "RESIZE",
}
API_STATUS: Final[Mapping[str, tuple[str, Mapping[str, str]]]] = {
    "active": (
        "ACTIVE",
        {
            **_REBOOT,
            **_HARD_REBOOT,
            **_REBUILD,
            **_RESIZE,
            "updating_password": "PASSWORD",
            "migrating": "MIGRATING",
        },
    ),
    "building": ("BUILD", {}),
    "stopped": ("SHUTOFF", {**_RESIZE, **_REBUILD}),
    "resized": ("VERIFY_RESIZE", {"resize_reverting": "REVERT_RESIZE"}),
    "paused": ("PAUSED", {"migrating": "MIGRATING"}),
    "suspended": ("SUSPENDED", {}),
    "rescued": ("RESCUE", {}),
    "error": ("ERROR", {"rebuilding": "REBUILD"}),
    "deleted": ("DELETED", {}),
    "soft-delete": ("SOFT_DELETED", {}),
    "shelved": ("SHELVED", {}),
    "shelved_offloaded": ("SHELVED_OFFLOADED", {}),
}

# Multicloud's fault_vm.py: any other API status is a VM failure.
HEALTHY_STATUSES: Final = frozenset({"BUILD", "ACTIVE", "HARD_REBOOT", "REBOOT", "MIGRATING", "PASSWORD"})

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
    """A raised VM failure alarm: its eventId, when it was raised, and its current severity."""

    event_id: str
    raised_at: int  # epoch microseconds of the event that raised it
    severity: str

    def as_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "raised_at": self.raised_at, "severity": self.severity}

    @classmethod
    def from_dict(cls, value: Any) -> Alarm | None:
        # None and dict first: the ABC check costs, and this runs on every event.
        if value is None or (type(value) is not dict and not isinstance(value, Mapping)):
            return None
        event_id, raised_at, severity = value.get("event_id"), value.get("raised_at"), value.get("severity")
        if not isinstance(event_id, str) or type(raised_at) is not int or severity not in _PRIORITY:
            return None
        return cls(event_id, raised_at, severity)


class Step(NamedTuple):
    """What one applied event did to its VM's alarm, and what the VES encoding of it needs. A
    named tuple: as immutable as a frozen dataclass, made in half the time (twice per event).

    alarm       for raise and none, the alarm standing after the event (None: no alarm); for
                clear, the alarm it cleared
    old_status  the VM's API status before the event (None: unknown, e.g. a new VM)
    sequence    the event's number in its VM's life, the VES `sequence`
    """

    transition: Transition
    alarm: Alarm | None
    old_status: str | None
    sequence: int

    @property
    def standing_alarm(self) -> Alarm | None:
        return None if self.transition == CLEAR else self.alarm


def api_status(vm_state: Any, task_state: Any) -> str | None:
    """Nova's API status (ACTIVE, SHUTOFF, ...) for a vm_state and task_state; None if unknown."""
    entry = API_STATUS.get(vm_state) if isinstance(vm_state, str) else None
    if entry is None:
        return None
    default, by_task = entry
    return by_task.get(task_state, default) if isinstance(task_state, str) else default


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
    return f"{vim_id}/{instance_id}/alarm/{raised_at}"


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
    return Step(
        written["transition"],
        Alarm.from_dict(written.get("alarm")),
        old_status if isinstance(old_status, str) else None,
        sequence if type(sequence) is int else 0,
    )


def step_to_meta(step: Step) -> dict[str, Any]:
    """The state record's bookkeeping for a step: the standing alarm, and the step itself."""
    meta: dict[str, Any] = {
        "ves": {
            "transition": step.transition,
            "alarm": step.alarm.as_dict() if step.alarm else None,
            "old_status": step.old_status,
            "sequence": step.sequence,
        }
    }
    if step.standing_alarm is not None:
        meta["alarm"] = step.standing_alarm.as_dict()
    return meta


def next_step(event: Mapping[str, Any], previous_state: Mapping[str, Any] | None, meta_key: str) -> Step:
    """The alarm step of an event, given its VM's state record before it (None: a new VM).

    An event whose vm_state is unknown leaves the alarm as it is: its VES encoding is what fails,
    and only where a `ves` sink asks for it.
    """
    meta = previous_state.get(meta_key) if previous_state else None
    previous = step_from_meta(meta)
    standing = previous.standing_alarm if previous else None
    sequence = previous.sequence + 1 if previous else 0
    old_status = (
        api_status(previous_state.get("state"), previous_state.get("task_state")) if previous_state else None
    )
    status = api_status(event.get("state"), event.get("task_state"))
    failed_action = event.get("phase") == "error"
    if not failed_action and (status == "DELETED" or event.get("status") == "DELETE"):
        # A deliberate delete is no VM failure, although Multicloud's healthy set would call the
        # deleted VM one that nothing ever clears: the VM being gone clears its alarm, and its
        # delete raises only if it fails (or, in streams.stuck, never ends).
        if standing is not None and status == "DELETED":
            return Step(CLEAR, standing, old_status, sequence)
        return Step(NONE, standing, old_status, sequence)
    failed_status = status is not None and status not in HEALTHY_STATUSES
    if failed_status or failed_action:
        # A failed action on a VM Nova still reports healthy is less than a VM that is down.
        severity = CRITICAL if failed_status else MAJOR
        if standing is None:
            raised_at = epoch_micros(event.get("occurred_at"))
            alarm = Alarm(
                alarm_event_id(str(event.get("vim_id")), str(event.get("instance_id")), raised_at),
                raised_at,
                severity,
            )
            return Step(RAISE, alarm, old_status, sequence)
        if severity == CRITICAL and standing.severity != CRITICAL:
            # The same episode got worse: raised again under the same eventId, now CRITICAL.
            return Step(RAISE, Alarm(standing.event_id, standing.raised_at, CRITICAL), old_status, sequence)
        return Step(NONE, standing, old_status, sequence)
    if standing is not None and status in HEALTHY_STATUSES:
        return Step(CLEAR, standing, old_status, sequence)
    return Step(NONE, standing, old_status, sequence)


def service_state(status: str | None) -> str:
    if status in _IN_SERVICE:
        return "inService"
    if status in _MAINTENANCE:
        return "maintenance"
    return "outOfService"


def _text_map(values: Mapping[str, Any]) -> dict[str, str]:
    # VES hashMaps carry strings only; an absent value is left out rather than written "None".
    return {k: v if isinstance(v, str) else str(v) for k, v in values.items() if v is not None and v != ""}


def ves_event(
    event: Mapping[str, Any],
    step: Step,
    reporting_entity: str | None = None,
    *,
    occurred_micros: int | None = None,
) -> dict[str, Any]:
    """The VES event for a VM status event (its JSON form) and the alarm step it made.

    reporting_entity names the reporter in the header; by default the event's VIM: Policy and
    Holmes find the vserver in A&AI by its cloud region. occurred_micros: the event's occurred_at
    in epoch µs, when the caller has it (else it is read from the event's ISO text).
    """
    status = api_status(event.get("state"), event.get("task_state"))
    if status is None:
        raise VesMappingError(
            "ves_unknown_vm_state",
            f"vm_state {event.get('state')!r} has no Nova API status, so no VES fault or state",
        )
    instance_id = str(event["instance_id"])
    vim_id = str(event["vim_id"])
    occurred = epoch_micros(event.get("occurred_at")) if occurred_micros is None else occurred_micros
    details = _text_map(
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
    header: dict[str, Any] = {
        "sourceId": instance_id,
        "sourceName": event.get("display_name") or instance_id,
        "reportingEntityName": reporting_entity or vim_id,
        "sequence": step.sequence,
        "version": HEADER_VERSION,
        "vesEventListenerVersion": LISTENER_VERSION,
        "timeZoneOffset": "UTC+00.00",
    }
    if step.transition in (RAISE, CLEAR) and step.alarm is not None:
        raising = step.transition == RAISE
        severity = step.alarm.severity if raising else NORMAL
        header.update(
            domain="fault",
            eventId=step.alarm.event_id,
            eventName=RAISE_EVENT_NAME if raising else CLEAR_EVENT_NAME,
            priority=_PRIORITY[severity],
            startEpochMicrosec=step.alarm.raised_at,
            lastEpochMicrosec=occurred,
        )
        fields: dict[str, Any] = {
            "alarmCondition": "Guest_Os_Failure" if raising else "Vm_Restart",
            "eventSeverity": severity,
            "eventSourceType": SOURCE_TYPE,
            "faultFieldsVersion": FIELDS_VERSION,
            "specificProblem": "AlarmOn" if raising else "AlarmOff",
            "vfStatus": "Active",
            "alarmAdditionalInformation": details,
        }
        return {"event": {"commonEventHeader": header, "faultFields": fields}}
    header.update(
        domain="stateChange",
        eventId=f"{vim_id}/{instance_id}/{step.sequence}",
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
        "additionalFields": details,
    }
    return {"event": {"commonEventHeader": header, "stateChangeFields": state_fields}}


def encode(
    event: Mapping[str, Any],
    step: Step,
    reporting_entity: str | None = None,
    *,
    occurred_micros: int | None = None,
) -> bytes:
    return orjson.dumps(ves_event(event, step, reporting_entity, occurred_micros=occurred_micros))


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
        "sourceName": event.get("display_name") or instance_id,
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
