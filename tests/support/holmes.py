"""A consumer of VES faults that reads, stores and pairs them as ONAP's Holmes does, and applies
Holmes's VM-failure rule: what ONAP's closed loop would do with eventfed's fault feed.

Written here from the behaviour of ONAP's code as documented (no Holmes code), checked in
onap/holmes-engine-management, onap/holmes-common and onap/holmes-rule-management:
- parse (`DMaaPResponseUtil.convertJsonToVesAlarm`): a record needs `event`, its
  `commonEventHeader` and `faultFields`; anything else is logged as an error and skipped;
- a clear is an alarm whose `eventName` ends in `Cleared`; it pairs with its raise by the
  eventName without `Cleared` plus `sourceId` (`VesAlarm.equals`), and the stored raises are
  deleted by EVENTNAME, SOURCEID and SOURCENAME (`AlarmInfoDao`);
- a raise is inserted with primary key (eventId, 0, sourceName) in a VARCHAR(150) eventId: a
  second raise with the same key, or a longer id, fails the insert and is dropped;
- the VM-failure rule (`rules/volte-rule.drl`) matches `eventName == Fault_MultiCloud_VMFailure`
  with a non-empty sourceId and sourceName, whatever its severity, condition or problem, and sends
  ONSET to Policy; the matching clear sends ABATED. Policy then restarts or rebuilds the VM.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

VM_FAILURE = "Fault_MultiCloud_VMFailure"
CLEARED = "Cleared"
EVENT_ID_COLUMN = 150
ONSET = "ONSET"
ABATED = "ABATED"
# The statuses of a VM that is down, written out here rather than taken from eventfed's code.
DOWN = frozenset(
    {"ERROR", "SHUTOFF", "PAUSED", "SUSPENDED", "RESCUE", "SHELVED", "SHELVED_OFFLOADED", "SOFT_DELETED"}
)


@dataclass(frozen=True)
class StoredAlarm:
    event_id: str
    event_name: str
    source_id: str
    source_name: str


@dataclass
class HolmesShapedConsumer:
    stored: dict[tuple[str, int, str], StoredAlarm] = field(default_factory=dict)
    parse_errors: list[str] = field(default_factory=list)
    insert_errors: list[str] = field(default_factory=list)
    # Raises delivered again (at-least-once after a crash): Holmes drops them at the insert.
    dropped_duplicates: list[str] = field(default_factory=list)
    # (ONSET or ABATED, sourceId) in the order the rule sent them to Policy.
    decisions: list[tuple[str, str]] = field(default_factory=list)

    def consume_all(self, values: Iterable[bytes]) -> HolmesShapedConsumer:
        for value in values:
            self.consume(value)
        return self

    def consume(self, value: bytes) -> None:
        try:
            document = json.loads(value)
            event = document["event"]
            header = event["commonEventHeader"]
            fields = event["faultFields"]
            if not isinstance(header, dict) or not isinstance(fields, dict):
                raise TypeError("commonEventHeader and faultFields must be objects")
            name = str(header["eventName"])
        except (ValueError, KeyError, TypeError) as exc:
            self.parse_errors.append(f"{type(exc).__name__}: {exc}: {value[:120]!r}")
            return
        source_id = str(header.get("sourceId") or "")
        source_name = str(header.get("sourceName") or "")
        if name.endswith(CLEARED):
            raised_name = name[: -len(CLEARED)]
            paired = [
                a for a in self.stored.values() if (a.event_name, a.source_id) == (raised_name, source_id)
            ]
            for alarm in paired:
                if alarm.source_name == source_name:
                    del self.stored[(alarm.event_id, 0, alarm.source_name)]
            if raised_name == VM_FAILURE and paired:
                self.decisions.append((ABATED, source_id))
            return
        event_id = str(header.get("eventId") or "")
        key = (event_id, 0, source_name)
        if len(event_id) > EVENT_ID_COLUMN:
            self.insert_errors.append(f"eventId longer than {EVENT_ID_COLUMN}: {event_id}")
            return
        if key in self.stored:
            self.dropped_duplicates.append(event_id)
            return
        self.stored[key] = StoredAlarm(event_id, name, source_id, source_name)
        if name == VM_FAILURE and source_id and source_name:
            self.decisions.append((ONSET, source_id))

    def standing(self, source_id: str) -> list[StoredAlarm]:
        return [a for a in self.stored.values() if a.source_id == source_id]


@dataclass(frozen=True)
class Expected:
    """What the closed loop should see for one VM: episodes down, recoveries, how it ended."""

    onsets: int
    abated: int
    final: str


def expected_from_statuses(statuses: Sequence[str | None]) -> Expected:
    """The ONSETs and ABATEDs for a VM that settled in these API statuses in turn (None: no
    change), DELETED last if it was deleted."""
    onsets = abated = 0
    down = False
    final = "ACTIVE"
    for status in statuses:
        if status is None:
            continue
        now_down = status in DOWN
        if now_down and not down:
            onsets += 1
        elif down and not now_down:
            abated += 1
        down, final = now_down, status
    return Expected(onsets, abated, final)


def check_closed_loop(consumer: HolmesShapedConsumer, expected: Mapping[str, Expected]) -> None:
    """Assert the closed loop acts exactly where a VM went down, and nowhere else.

    An ONSET for every episode a VM settled down, an ABATED for each it recovered from (or was
    deleted in), none for a VM that only went through deliberate actions and ended healthy, no
    parse or insert error on the fault topic, and no alarm left standing for a VM that is ACTIVE
    or deleted at the end.
    """
    assert consumer.parse_errors == [], consumer.parse_errors[:5]
    assert consumer.insert_errors == [], consumer.insert_errors[:5]
    counts: Counter[tuple[str, str]] = Counter(consumer.decisions)
    problems: list[str] = []
    for vm, want in expected.items():
        got = (counts[(ONSET, vm)], counts[(ABATED, vm)])
        if got != (want.onsets, want.abated):
            problems.append(
                f"{vm}: ONSET/ABATED {got}, expected {(want.onsets, want.abated)} (ends {want.final})"
            )
        if want.final not in DOWN and consumer.standing(vm):
            problems.append(f"{vm}: ends {want.final} with alarms standing: {consumer.standing(vm)}")
    strangers = {vm for _, vm in consumer.decisions} - set(expected)
    if strangers:
        problems.append(f"decisions for VMs nobody expected: {sorted(strangers)}")
    assert not problems, problems


def decisions_of(documents: Iterable[Mapping[str, Any]]) -> HolmesShapedConsumer:
    """A consumer fed with VES documents (parsed JSON), for in-process tests."""
    return HolmesShapedConsumer().consume_all(json.dumps(d).encode() for d in documents)
