"""Stuck actions: a Nova action whose `.start` gets no `.end` or `.error` in time. Pure: no I/O.

Nova tells when an action starts and when it ends or fails; when neither comes (a DELETE stuck in
`deleting`, a live migration that hangs), nothing else will. The pending actions of a VM live in
its state record (under META, key `pending`: kind -> `Pending`), not in the worker: the state
table is changelog-backed, so a timer survives a worker restart and moves with its partition. The
worker's sweep asks `due` of each and writes what `Processor.expire` decides, through the same
ordered writer as every batch (outputs first, then the state), so a crash in between raises again
with the same eventId rather than never.

The rules, one timer per action kind of a VM (a delete's nested shutdown has its own):
- `.start` of a kind with a time set: the timer starts (a second start of the same kind replaces
  the first one, clearing its stuck alarm if it was raised: Nova has moved on);
- `.end` or `.error` of that kind: the timer stops; if it had fired, its alarm clears;
- the VM deleted (vm_state `deleted`): every timer stops, fired ones clear;
- the deadline is counted from when eventfed handled the start (or Nova's timestamp, if later), so
  a worker catching up on a backlog does not raise for actions whose end is just behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from schemas.action_times import DEFAULT_KEY, DEFAULT_STUCK_AFTER, parse_duration, parse_stuck_after
from schemas.state import Bookkeeping, PendingRecord
from streams.event_ids import bounded_event_id

__all__ = ["DEFAULT_KEY", "DEFAULT_STUCK_AFTER", "parse_duration", "parse_stuck_after"]

STUCK_STATUS: Final = "STUCK"
STUCK_PHASE: Final = "error"
_PENDING: Final = "pending"


def seconds_for(stuck_after: Mapping[str, float], kind: str) -> float:
    """The time a kind may take; 0: no timer. Empty settings (the processor's default) time nothing."""
    if not stuck_after:
        return 0.0
    return stuck_after.get(kind, stuck_after.get(DEFAULT_KEY, 0.0))


@dataclass(frozen=True, slots=True)
class Pending:
    """One started action waiting for its end.

    started_at  the start's occurred_at, epoch µs (the stuck alarm's id and start)
    deadline    epoch µs after which it is stuck
    stuck       whether the stuck alarm is raised
    sequence    the VES sequence of the stuck raise, once raised
    after       the time the kind was given, seconds
    source_name the VES sourceName the stuck alarm was raised under, repeated on its clear
    """

    kind: str
    event_type: str
    started_at: int
    deadline: int
    stuck: bool = False
    sequence: int | None = None
    after: float = 0.0
    source_name: str | None = None

    def as_dict(self) -> PendingRecord:
        written: PendingRecord = {
            "event_type": self.event_type,
            "started_at": self.started_at,
            "deadline": self.deadline,
            "stuck": self.stuck,
            "sequence": self.sequence,
            "after": self.after,
        }
        if self.source_name is not None:
            written["source_name"] = self.source_name
        return written

    @classmethod
    def from_dict(cls, kind: str, value: Any) -> Pending | None:
        if not isinstance(value, Mapping):
            return None
        started_at, deadline, sequence = value.get("started_at"), value.get("deadline"), value.get("sequence")
        after = value.get("after")
        if type(started_at) is not int or type(deadline) is not int:
            return None
        return cls(
            kind,
            str(value.get("event_type") or ""),
            started_at,
            deadline,
            value.get("stuck") is True,
            sequence if type(sequence) is int else None,
            float(after) if isinstance(after, int | float) and not isinstance(after, bool) else 0.0,
            source_name if isinstance(source_name := value.get("source_name"), str) and source_name else None,
        )

    def due(self, now_micros: int) -> bool:
        return not self.stuck and self.deadline <= now_micros

    def raised(self, sequence: int, source_name: str | None = None) -> Pending:
        return replace(self, stuck=True, sequence=sequence, source_name=source_name)

    @property
    def stuck_seconds(self) -> float:
        return self.after or (self.deadline - self.started_at) / 1e6


def pending_of(meta: Any) -> dict[str, Pending]:
    """The pending actions written in a state record's META; unreadable entries are dropped."""
    # dict first: the ABC check costs, and this runs on every event.
    written = meta.get(_PENDING) if type(meta) is dict or isinstance(meta, Mapping) else None
    if written is None or (type(written) is not dict and not isinstance(written, Mapping)):
        return {}
    found = {kind: Pending.from_dict(kind, value) for kind, value in written.items() if isinstance(kind, str)}
    return {kind: pending for kind, pending in found.items() if pending is not None}


def pending_to_meta(pending: Mapping[str, Pending]) -> Bookkeeping:
    return {_PENDING: {kind: p.as_dict() for kind, p in sorted(pending.items())}} if pending else {}


def stuck_event_id(vim_id: str, instance_id: str, pending: Pending) -> str:
    # Deterministic: a raise written again after a crash, and its clear, carry the same id.
    return bounded_event_id(vim_id, f"{instance_id}/stuck/{pending.kind}/{pending.started_at}")


@dataclass(frozen=True, slots=True)
class Timers:
    """The pending actions after an event, and those whose stuck alarm the event clears."""

    pending: dict[str, Pending]
    cleared: tuple[Pending, ...]


def next_timers(
    event: Mapping[str, Any],
    before: Mapping[str, Pending],
    stuck_after: Mapping[str, float],
    occurred_micros: int,
    now_micros: int,
) -> Timers:
    """The timers of a VM after an applied event (its JSON form), given those before it."""
    kind = str(event.get("status") or "")
    phase = event.get("phase")
    pending = dict(before)
    cleared: list[Pending] = []
    if event.get("state") == "deleted":
        # Nothing can finish on a VM that is gone; a deleted VM's stuck alarms are cleared.
        cleared = [p for p in pending.values() if p.stuck]
        return Timers({}, tuple(cleared))
    if phase in ("end", "error", "start") and kind in pending:
        ended = pending.pop(kind)
        if ended.stuck:
            cleared.append(ended)
    if phase == "start":
        seconds = seconds_for(stuck_after, kind)
        if seconds > 0:
            since = max(occurred_micros, now_micros)
            pending[kind] = Pending(
                kind,
                str(event.get("event_type") or ""),
                occurred_micros,
                since + round(seconds * 1e6),
                after=seconds,
            )
    return Timers(pending, tuple(cleared))


def stuck_event(state: Mapping[str, Any], pending: Pending, meta_key: str, iso: str) -> dict[str, Any]:
    """The canonical event (JSON form) of a stuck action: the VM as last known, status STUCK.

    event_type is the start's; occurred_at and received_at are the deadline (`iso`), so that a raise
    written again is the same event; the fault's message names the action and how long it has had.
    """
    event = {k: v for k, v in state.items() if k != meta_key}
    event.update(
        status=STUCK_STATUS,
        phase=STUCK_PHASE,
        event_type=pending.event_type,
        priority="ERROR",
        occurred_at=iso,
        received_at=iso,
        message_id=stuck_event_id(str(state.get("vim_id")), str(state.get("instance_id")), pending),
        fault={
            "exception": "ActionStuck",
            "message": f"{pending.kind} has had no end or error for {pending.stuck_seconds:g}s",
            "code": None,
            "module_name": None,
            "function_name": None,
        },
    )
    return event
