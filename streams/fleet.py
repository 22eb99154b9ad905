"""eventfed's own figures per VIM per interval: the event flow counted as events are decided, the
VMs by API status read from the state table, and the merge of every raw partition's share into
one figure per VIM. Pure: no I/O, no clock.

The figures of one VIM are spread over the raw partitions (a VM lives on the partition of its
key), and so over the workers. They come together in three steps:

1. Flow: each applied event (and stuck alarm) is counted, by the worker's clock, into the open
   interval of its raw partition and VIM. The counts of a partition are a record of the state
   table (key `schemas.state.flow_key(partition)`), written with the states of the batch that
   counted them: a crash replays the batches since the last commit against the state those
   batches left, so an event is counted once, and a rebalance moves the counts with the partition.
2. Parts: once an interval's end plus the grace period has passed, the owner of each raw partition
   writes one part per VIM that partition has (its VMs by status, its flow) to the fleet-parts
   topic keyed by the VIM, then a manifest naming those VIMs to every partition of that topic,
   then the partition's flow record with the interval closed (`through`).
3. Merge: the fleet-parts topic is read by a Faust agent whose table keeps each interval's parts
   and manifests (per fleet-parts partition); once every raw partition's manifest is in, or the
   merge deadline has passed, each VIM of that partition gets its one fleet event, naming the
   raw partitions whose share is missing. A part or manifest read again changes nothing (a set,
   by raw partition), and an interval once emitted stays emitted.

Bookkeeping written (JSON):

  flow record (state table):  {"fleet_flow": {"open": {"<start>": {"<vim>": Flow.as_dict()}},
                                              "through": <start of the last interval sent>}}
  part (fleet-parts topic):   {"part": 1, "vim_id", "start", "length", "partition", "of",
                               "vms_by_status": {...}, "flow": Flow.as_dict()}
  manifest:                   {"manifest": 1, "start", "length", "partition", "of", "vims": [...]}
  merge book (merge table):   {"start", "length", "of", "manifests": {"<p>": [vim, ...]},
                               "parts": {"<vim>": {"<p>": part}}, "emitted": [vim, ...], "done": bool}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from schemas.api_status import status_or_unknown
from streams.metering import interval_start
from streams.ves_measurement import FleetFigures

FLOW: Final = "fleet_flow"
# A lag is kept to this many significant digits (within 5 %), counted per value: the percentiles
# of a busy interval cost a few hundred numbers, not one per event, in a record written every
# batch.
LAG_DIGITS: Final = 2


@dataclass(slots=True)
class Flow:
    """One VIM's event flow over one interval (of one raw partition, or merged)."""

    events_by_kind: dict[str, int] = field(default_factory=dict)
    raised: int = 0
    cleared: int = 0
    stuck: int = 0
    # Lag seconds (LAG_DIGITS significant digits, as text) -> how many events had it.
    lags: dict[str, int] = field(default_factory=dict)

    def add_lag(self, seconds: float) -> None:
        key = f"{seconds:.{LAG_DIGITS}g}"
        self.lags[key] = self.lags.get(key, 0) + 1

    def merge(self, other: Flow) -> None:
        for kind, count in other.events_by_kind.items():
            self.events_by_kind[kind] = self.events_by_kind.get(kind, 0) + count
        self.raised += other.raised
        self.cleared += other.cleared
        self.stuck += other.stuck
        for lag, count in other.lags.items():
            self.lags[lag] = self.lags.get(lag, 0) + count

    def as_dict(self) -> dict[str, Any]:
        return {
            "events_by_kind": dict(self.events_by_kind),
            "raised": self.raised,
            "cleared": self.cleared,
            "stuck": self.stuck,
            "lags": dict(self.lags),
        }

    @classmethod
    def from_dict(cls, value: Any) -> Flow:
        if not isinstance(value, Mapping):
            return cls()
        return cls(
            events_by_kind=_counts(value.get("events_by_kind")),
            raised=_count(value.get("raised")),
            cleared=_count(value.get("cleared")),
            stuck=_count(value.get("stuck")),
            lags=_counts(value.get("lags")),
        )


def _count(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if type(v) is int and v > 0}


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """The nearest-rank percentile (fraction 0..1); None without values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def lag_percentile(lags: Mapping[str, int], fraction: float) -> float | None:
    """The nearest-rank percentile of a lag histogram (Flow.lags); None without lags."""
    ordered = sorted((float(lag), count) for lag, count in lags.items())
    total = sum(count for _, count in ordered)
    if not total:
        return None
    rank, seen = max(1, math.ceil(fraction * total)), 0
    for lag, count in ordered:
        seen += count
        if seen >= rank:
            return lag
    return ordered[-1][0]


@dataclass(slots=True)
class _PartitionFlow:
    open: dict[int, dict[str, Flow]] = field(default_factory=dict)
    through: int | None = None


class FleetFlow:
    """The event flow of the open intervals, per raw partition and VIM, as the state table keeps
    it (step 1 of the module's docstring). The runner loads a partition's record before counting
    into it, takes the records changed by a batch into that batch's states, and forgets them all
    at a rebalance (they are loaded again from the table)."""

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self._partitions: dict[int, _PartitionFlow] = {}
        self._changed: set[int] = set()

    def loaded(self, partition: int) -> bool:
        return partition in self._partitions

    def load(self, partition: int, record: Mapping[str, Any] | None) -> None:
        """A partition's flow from its state-table record (None: nothing counted yet)."""
        kept = record.get(FLOW) if isinstance(record, Mapping) else None
        flows = _PartitionFlow()
        if isinstance(kept, Mapping):
            for text, by_vim in (kept.get("open") or {}).items():
                try:
                    start = int(text)
                except ValueError:
                    continue
                if isinstance(by_vim, Mapping):
                    flows.open[start] = {str(v): Flow.from_dict(f) for v, f in by_vim.items()}
            through = kept.get("through")
            flows.through = through if type(through) is int else None
        self._partitions[partition] = flows
        self._changed.discard(partition)

    def forget(self) -> None:
        self._partitions.clear()
        self._changed.clear()

    def _flows(self, partition: int) -> _PartitionFlow:
        flows = self._partitions.get(partition)
        if flows is None:
            flows = self._partitions[partition] = _PartitionFlow()
        return flows

    def _flow(self, partition: int, vim_id: str, now: float) -> Flow:
        flows = self._flows(partition)
        start = interval_start(now, self.interval)
        if flows.through is not None and start <= flows.through:
            # The worker's clock stepped back behind an interval already sent: the next one.
            start = flows.through + self.interval
        by_vim = flows.open.setdefault(start, {})
        flow = by_vim.get(vim_id)
        if flow is None:
            flow = by_vim[vim_id] = Flow()
        self._changed.add(partition)
        return flow

    def event(
        self,
        partition: int,
        vim_id: str,
        kind: str,
        lag_seconds: float | None,
        raised: bool,
        cleared: bool,
        now: float,
    ) -> None:
        flow = self._flow(partition, vim_id, now)
        flow.events_by_kind[kind] = flow.events_by_kind.get(kind, 0) + 1
        flow.raised += raised
        flow.cleared += cleared
        if lag_seconds is not None:
            flow.add_lag(lag_seconds)

    def stuck(self, partition: int, vim_id: str, now: float) -> None:
        self._flow(partition, vim_id, now).stuck += 1

    def through(self, partition: int) -> int | None:
        """The start of the last interval whose part this partition sent (None: none yet)."""
        flows = self._partitions.get(partition)
        return flows.through if flows is not None else None

    def take(self, partition: int, start: int) -> dict[str, Flow]:
        """The partition's flows of the interval starting at `start`, per VIM, closed: the
        partition's `through` moves to it and older intervals are dropped."""
        flows = self._flows(partition)
        taken: dict[str, Flow] = {}
        for key in [k for k in flows.open if k <= start]:
            by_vim = flows.open.pop(key)
            if key == start:
                taken = by_vim
        flows.through = start if flows.through is None else max(flows.through, start)
        self._changed.add(partition)
        return taken

    def record(self, partition: int) -> dict[str, Any]:
        flows = self._flows(partition)
        return {
            FLOW: {
                "open": {
                    str(start): {vim: flow.as_dict() for vim, flow in sorted(by_vim.items())}
                    for start, by_vim in sorted(flows.open.items())
                },
                "through": flows.through,
            }
        }

    def take_changed(self) -> list[tuple[int, dict[str, Any]]]:
        """The records of the partitions counted into since the last call, to be written."""
        changed = [(partition, self.record(partition)) for partition in sorted(self._changed)]
        self._changed.clear()
        return changed


def status_of(state: Mapping[str, Any]) -> str:
    """A VM's Nova API status from its state record (DELETED for a deleted VM; UNKNOWN for a VM
    known from its samples only)."""
    return status_or_unknown(state.get("state"), state.get("task_state"))


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


def partition_parts(
    start: int,
    length: int,
    partition: int,
    of: int,
    statuses: Mapping[str, Mapping[str, int]],
    flows: Mapping[str, Flow],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One raw partition's parts of an interval (one per VIM it has) and its manifest."""
    head = {"start": start, "length": length, "partition": partition, "of": of}
    vims = sorted(set(statuses) | set(flows))
    parts = [
        {
            "part": 1,
            "vim_id": vim_id,
            **head,
            "vms_by_status": dict(statuses.get(vim_id) or {}),
            "flow": (flows.get(vim_id) or Flow()).as_dict(),
        }
        for vim_id in vims
    ]
    return parts, {"manifest": 1, **head, "vims": vims}


def merge_deadline(start: int, length: int, grace: float) -> float:
    """When an interval's figures go out with what has come: parts are sent once its end plus
    the grace period has passed, and they get as long again to arrive."""
    return start + length + 2 * grace


def add_to_book(book: Mapping[str, Any] | None, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge book of an interval with a part or manifest added; None: the record changes
    nothing (read again, or late: the interval was emitted)."""
    current: dict[str, Any] = dict(book) if book else {}
    if current.get("done"):
        return None
    partition = str(record.get("partition"))
    of = record.get("of")
    current.setdefault("start", record.get("start"))
    current.setdefault("length", record.get("length"))
    if type(of) is int and of > (current.get("of") or 0):
        current["of"] = of
    if record.get("manifest"):
        manifests = dict(current.get("manifests") or {})
        if partition in manifests:
            return None
        manifests[partition] = list(record.get("vims") or [])
        current["manifests"] = manifests
        return current
    vim_id = str(record.get("vim_id"))
    parts = dict(current.get("parts") or {})
    of_vim = dict(parts.get(vim_id) or {})
    if partition in of_vim:
        return None
    of_vim[partition] = dict(record)
    parts[vim_id] = of_vim
    current["parts"] = parts
    return current


def complete(book: Mapping[str, Any]) -> bool:
    """Whether every raw partition's manifest is in (then every part for this partition is too:
    a partition's parts are written before its manifests)."""
    of = book.get("of")
    return type(of) is int and len(book.get("manifests") or {}) >= of


def merged_figures(book: Mapping[str, Any]) -> list[FleetFigures]:
    """One figure per VIM of the book not yet emitted: the sum of its parts, naming the raw
    partitions whose manifest is missing."""
    of = book.get("of")
    of = of if type(of) is int else 0
    manifests = book.get("manifests") or {}
    missing = tuple(p for p in range(of) if str(p) not in manifests)
    emitted = set(book.get("emitted") or [])
    figures = []
    for vim_id, parts in sorted((book.get("parts") or {}).items()):
        if vim_id in emitted:
            continue
        statuses: dict[str, int] = {}
        flow = Flow()
        for part in parts.values():
            for status, count in (part.get("vms_by_status") or {}).items():
                statuses[status] = statuses.get(status, 0) + count
            flow.merge(Flow.from_dict(part.get("flow")))
        counted = tuple(sorted(int(p) for p in parts))
        figures.append(
            _figures(vim_id, int(book["start"]), int(book["length"]), statuses, flow, counted, missing)
        )
    return figures


def fleet_figures(
    start: int,
    length: int,
    statuses: Mapping[str, Mapping[str, int]],
    flows: Mapping[str, Flow],
    partitions: Iterable[int] = (),
) -> list[FleetFigures]:
    """One VIM's figures per VIM that has VMs or events, sorted by VIM, from counts in hand
    (a single worker's, as `make bench` measures them)."""
    counted = tuple(sorted(partitions))
    figures = []
    for vim_id in sorted(set(statuses) | set(flows)):
        flow = flows.get(vim_id) or Flow()
        figures.append(_figures(vim_id, start, length, dict(statuses.get(vim_id) or {}), flow, counted))
    return figures


def _figures(
    vim_id: str,
    start: int,
    length: int,
    statuses: Mapping[str, int],
    flow: Flow,
    partitions: tuple[int, ...],
    missing: tuple[int, ...] = (),
) -> FleetFigures:
    """A VIM's figures of one interval: its VMs by status, and its events as `flow` counted them."""
    return FleetFigures(
        vim_id=vim_id,
        start=start,
        length=length,
        vms_by_status=statuses,
        events_by_kind=dict(flow.events_by_kind),
        failures_raised=flow.raised,
        failures_cleared=flow.cleared,
        stuck_actions=flow.stuck,
        lag_p50=lag_percentile(flow.lags, 0.50),
        lag_p99=lag_percentile(flow.lags, 0.99),
        partitions=partitions,
        missing_partitions=missing,
    )
