"""eventfed's own figures per VIM per interval: the event flow counted as events are decided, and
the VMs by API status read from the state table when the interval closes. Pure: no I/O, no clock.

The flow of an interval is what this worker decided while the interval ran (by the worker's
clock): events by status kind, VM failures raised and cleared (the default rule), stuck alarms
raised, and the notification lag, eventfed's receipt of a notification minus Nova's timestamp.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from schemas.state import DELETED_STATE
from streams import ves
from streams.metering import interval_start
from streams.ves_measurement import FleetFigures

# Lags kept per VIM per interval for the percentiles: a bound on memory at any event rate (the
# first ones of a busy interval stand for it).
MAX_LAGS: Final = 100_000
UNKNOWN_STATUS: Final = "UNKNOWN"


@dataclass(slots=True)
class Flow:
    """One VIM's event flow over one interval."""

    events_by_kind: dict[str, int] = field(default_factory=dict)
    raised: int = 0
    cleared: int = 0
    stuck: int = 0
    lags: list[float] = field(default_factory=list)


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """The nearest-rank percentile (fraction 0..1); None without values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class FleetFlow:
    """The event flow of the open intervals, per VIM."""

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self._flows: dict[tuple[int, str], Flow] = {}

    def _flow(self, vim_id: str, now: float) -> Flow:
        key = (interval_start(now, self.interval), vim_id)
        flow = self._flows.get(key)
        if flow is None:
            flow = self._flows[key] = Flow()
        return flow

    def event(
        self, vim_id: str, kind: str, lag_seconds: float | None, raised: bool, cleared: bool, now: float
    ) -> None:
        flow = self._flow(vim_id, now)
        flow.events_by_kind[kind] = flow.events_by_kind.get(kind, 0) + 1
        flow.raised += raised
        flow.cleared += cleared
        if lag_seconds is not None and len(flow.lags) < MAX_LAGS:
            flow.lags.append(lag_seconds)

    def stuck(self, vim_id: str, now: float) -> None:
        self._flow(vim_id, now).stuck += 1

    def take(self, start: int) -> dict[str, Flow]:
        """The flows of the interval starting at `start`, per VIM, forgotten here (and any older)."""
        taken: dict[str, Flow] = {}
        for key in [k for k in self._flows if k[0] <= start]:
            flow = self._flows.pop(key)
            if key[0] == start:
                taken[key[1]] = flow
        return taken


def status_of(state: Mapping[str, Any]) -> str:
    """A VM's Nova API status from its state record (DELETED for a deleted VM)."""
    if state.get("state") == DELETED_STATE:
        return ves.DELETED_STATUS
    return ves.api_status(state.get("state"), state.get("task_state")) or UNKNOWN_STATUS


def count_statuses(states: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """VMs by VIM and API status."""
    counts: dict[str, dict[str, int]] = {}
    for state in states:
        vim_id = state.get("vim_id")
        if not isinstance(vim_id, str):
            continue
        by_status = counts.setdefault(vim_id, {})
        status = status_of(state)
        by_status[status] = by_status.get(status, 0) + 1
    return counts


def fleet_figures(
    start: int,
    length: int,
    statuses: Mapping[str, Mapping[str, int]],
    flows: Mapping[str, Flow],
    partitions: Iterable[int] = (),
) -> list[FleetFigures]:
    """One VIM's figures per VIM that has VMs or events, sorted by VIM; `partitions`: the ones
    counted (the worker's own)."""
    counted = tuple(sorted(partitions))
    figures = []
    for vim_id in sorted(set(statuses) | set(flows)):
        flow = flows.get(vim_id) or Flow()
        figures.append(
            FleetFigures(
                vim_id=vim_id,
                start=start,
                length=length,
                vms_by_status=dict(statuses.get(vim_id) or {}),
                events_by_kind=dict(flow.events_by_kind),
                failures_raised=flow.raised,
                failures_cleared=flow.cleared,
                stuck_actions=flow.stuck,
                lag_p50=percentile(flow.lags, 0.50),
                lag_p99=percentile(flow.lags, 0.99),
                partitions=counted,
            )
        )
    return figures
