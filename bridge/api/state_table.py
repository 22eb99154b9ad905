"""The latest state of every VM, in memory, indexed for the API.

This module is pure: it knows the state topic's record format (key ``"{vim_id}/{instance_id}"``,
value a JSON object or a tombstone) but nothing about Kafka, so it is tested without a broker.

Memory is the constraint that shapes it: 100,000 VMs as parsed JSON dicts would take several
hundred MB, so a VM keeps the record bytes as received (returned verbatim by the single-VM
route), a pre-encoded summary (the list and check_vim_status items, joined without re-encoding)
and only the few decoded fields that the indexes and filters need.
"""

from __future__ import annotations

import enum
import json
import logging
import sys
import threading
from bisect import bisect_right
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.state import parse_state_key

LOG = logging.getLogger(__name__)


# The fields of a VM's summary: what a list page or a check_vim_status answer shows per VM.
SUMMARY_FIELDS: tuple[str, ...] = (
    "instance_id",
    "vim_id",
    "display_name",
    "state",
    "state_description",
    "status",
    "phase",
    "launched_at",
    "occurred_at",
    "updated_at",
    "tenant_id",
    "host",
    "power_state",
    "task_state",
    "event_type",
)
# Nova reports power_state as a name in versioned notifications and as a number in legacy ones.
_SCALAR_SUMMARY_FIELDS = frozenset({"power_state"})

# Where a VM's state is missing, the per-state counts of /vims file it under this name.
UNKNOWN_STATE = "unknown"


class ApplyOutcome(enum.Enum):
    UPSERTED = "upserted"
    REMOVED = "removed"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    outcome: ApplyOutcome
    # Why a record was skipped ("key", "json", "mismatch"); empty for applied records.
    reason: str = ""


class _MalformedRecord(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(slots=True)
class _VmRow:
    instance_id: str
    # Normalised for matching: vm_state lower-case, status kind upper-case.
    state: str | None
    status: str | None
    tenant_id: str | None
    host: str | None
    summary_json: bytes
    record_json: bytes
    # Set when a tombstone removed the VM; the row then waits in `_Vim.order` for the next read.
    removed: bool = False

    def update_from(self, newer: _VmRow) -> None:
        # In place, so the row keeps its slot in `_Vim.order` and no re-sort is needed.
        self.state, self.status = newer.state, newer.status
        self.tenant_id, self.host = newer.tenant_id, newer.host
        self.summary_json, self.record_json = newer.summary_json, newer.record_json


def _row_key(row: _VmRow) -> str:
    return row.instance_id


@dataclass(frozen=True, slots=True)
class VimOverview:
    vim_id: str
    vm_count: int
    state_counts: dict[str, int]
    status_counts: dict[str, int]
    last_event_at: str | None


@dataclass(frozen=True, slots=True)
class VmFilter:
    """Conditions of a list request; None means "any". state and status are normalised."""

    state: str | None = None
    status: str | None = None
    tenant_id: str | None = None
    host: str | None = None


@dataclass(frozen=True, slots=True)
class VmPage:
    summaries: list[bytes]
    # instance_id to pass as the marker of the next page; None on the last page.
    next_marker: str | None


@dataclass(slots=True)
class _Vim:
    rows: dict[str, _VmRow] = field(default_factory=dict)
    by_state: dict[str | None, set[str]] = field(default_factory=dict)
    by_status: dict[str | None, set[str]] = field(default_factory=dict)
    # The rows in instance_id order, for paging and for answers in a stable order. Scans walk
    # this list rather than looking ids up in `rows`, which costs a hash probe per VM. New VMs
    # are appended and removed ones only flagged: the next read drops them and re-sorts, which
    # Timsort does in linear time for a sorted run plus a short tail, instead of an O(n) insert
    # per record while the topic is replayed.
    order: list[_VmRow] = field(default_factory=list)
    order_sorted: bool = True
    order_removed: int = 0
    last_event_at: datetime | None = None
    last_event_text: str | None = None

    def sorted_rows(self) -> list[_VmRow]:
        if self.order_removed:
            self.order = [row for row in self.order if not row.removed]
            self.order_removed = 0
        if not self.order_sorted:
            self.order.sort(key=_row_key)
            self.order_sorted = True
        return self.order

    def index(self, row: _VmRow) -> None:
        self.by_state.setdefault(row.state, set()).add(row.instance_id)
        self.by_status.setdefault(row.status, set()).add(row.instance_id)

    def unindex(self, row: _VmRow) -> None:
        for index, value in ((self.by_state, row.state), (self.by_status, row.status)):
            members = index.get(value)
            if members is not None:
                members.discard(row.instance_id)
                if not members:
                    del index[value]


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; a record holding them could not be served verbatim.
    raise ValueError(f"{name} is not valid JSON")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _summary_value(name: str, value: Any) -> Any:
    if isinstance(value, str) or value is None:
        return value
    if name in _SCALAR_SUMMARY_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _interned(value: str | None) -> str | None:
    # Tenants, hosts, states and kinds repeat across thousands of VMs; one copy each.
    return sys.intern(value) if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Naive and aware datetimes do not compare; the contract's times are UTC.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _build_row(vim_id: str, instance_id: str, value: bytes | str) -> tuple[_VmRow, Any]:
    try:
        record = json.loads(value, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _MalformedRecord("json", f"value is not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise _MalformedRecord("json", "value is not a JSON object")
    for name, expected in (("vim_id", vim_id), ("instance_id", instance_id)):
        if name in record and record[name] != expected:
            raise _MalformedRecord("mismatch", f"{name} in the value differs from the key")
    summary = {name: _summary_value(name, record.get(name)) for name in SUMMARY_FIELDS}
    summary["instance_id"] = instance_id
    summary["vim_id"] = vim_id
    state, status = _text(record.get("state")), _text(record.get("status"))
    record_json = value if isinstance(value, bytes) else value.encode("utf-8")
    row = _VmRow(
        instance_id=instance_id,
        state=_interned(state.lower()) if state else None,
        status=_interned(status.upper()) if status else None,
        tenant_id=_interned(_text(record.get("tenant_id"))),
        host=_interned(_text(record.get("host"))),
        summary_json=json.dumps(summary, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
        record_json=record_json,
    )
    return row, record.get("occurred_at")


class StateTable:
    """Latest state per VM, per VIM, with indexes by vm_state and by last status kind.

    Thread-safe: one writer (the state-topic consumer) and many readers (request threads).
    Records are decoded outside the lock; the lock covers only the index updates and the reads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vims: dict[str, _Vim] = {}
        self._vm_count = 0
        self.outcomes: Counter[str] = Counter()
        self.malformed_reasons: Counter[str] = Counter()

    # --- writing -------------------------------------------------------------------------------

    def apply(self, key: bytes | str | None, value: bytes | str | None) -> ApplyResult:
        """Apply one state-topic record: an upsert, or a removal for a tombstone (value None)."""
        parsed_key = parse_state_key(key)
        if parsed_key is None:
            return self._malformed("key")
        vim_id, instance_id = parsed_key
        if value is None:
            with self._lock:
                self._remove(vim_id, instance_id)
            return self._count(ApplyResult(ApplyOutcome.REMOVED))
        try:
            row, occurred_at = _build_row(vim_id, instance_id, value)
        except _MalformedRecord as exc:
            return self._malformed(exc.reason)
        occurred = _parse_time(occurred_at)
        with self._lock:
            self._upsert(vim_id, instance_id, row, occurred, occurred_at if occurred else None)
        return self._count(ApplyResult(ApplyOutcome.UPSERTED))

    def _count(self, result: ApplyResult) -> ApplyResult:
        self.outcomes[result.outcome.value] += 1
        return result

    def _malformed(self, reason: str) -> ApplyResult:
        self.malformed_reasons[reason] += 1
        return self._count(ApplyResult(ApplyOutcome.MALFORMED, reason))

    def _vim(self, vim_id: str) -> _Vim:
        vim = self._vims.get(vim_id)
        if vim is None:
            vim = self._vims[vim_id] = _Vim()
        return vim

    def _upsert(
        self, vim_id: str, instance_id: str, row: _VmRow, occurred: datetime | None, occurred_text: str | None
    ) -> None:
        vim = self._vim(vim_id)
        current = vim.rows.get(instance_id)
        if current is not None:
            vim.unindex(current)
            current.update_from(row)
            row = current
        else:
            vim.rows[instance_id] = row
            vim.order.append(row)
            vim.order_sorted = False
            self._vm_count += 1
        vim.index(row)
        if occurred is not None and (vim.last_event_at is None or occurred > vim.last_event_at):
            vim.last_event_at, vim.last_event_text = occurred, occurred_text

    def _remove(self, vim_id: str, instance_id: str) -> None:
        # A tombstone names its VIM, so the VIM stays known even when its last VM goes.
        vim = self._vim(vim_id)
        row = vim.rows.pop(instance_id, None)
        if row is None:
            return
        vim.unindex(row)
        row.removed = True
        vim.order_removed += 1
        self._vm_count -= 1

    # --- reading -------------------------------------------------------------------------------

    @property
    def vm_count(self) -> int:
        return self._vm_count

    def has_vim(self, vim_id: str) -> bool:
        with self._lock:
            return vim_id in self._vims

    def vm_counts(self) -> dict[str, int]:
        with self._lock:
            return {vim_id: len(vim.rows) for vim_id, vim in self._vims.items()}

    def vims(self) -> list[VimOverview]:
        with self._lock:
            return [
                VimOverview(
                    vim_id=vim_id,
                    vm_count=len(vim.rows),
                    state_counts={
                        (state or UNKNOWN_STATE): len(members) for state, members in vim.by_state.items()
                    },
                    status_counts={
                        (status or UNKNOWN_STATE): len(members) for status, members in vim.by_status.items()
                    },
                    last_event_at=vim.last_event_text,
                )
                for vim_id, vim in sorted(self._vims.items())
            ]

    def record(self, vim_id: str, instance_id: str) -> bytes | None:
        """The VM's latest record as received, or None if the VIM or the VM is unknown."""
        with self._lock:
            vim = self._vims.get(vim_id)
            row = vim.rows.get(instance_id) if vim is not None else None
            return row.record_json if row is not None else None

    def page(self, vim_id: str, vm_filter: VmFilter, marker: str | None, limit: int) -> VmPage | None:
        """Up to `limit` summaries after `marker` in instance_id order; None if the VIM is unknown."""
        with self._lock:
            vim = self._vims.get(vim_id)
            if vim is None:
                return None
            rows = self._candidate_rows(vim, vm_filter)
            start = bisect_right(rows, marker, key=_row_key) if marker is not None else 0
            summaries: list[bytes] = []
            last_id: str | None = None
            state, status = vm_filter.state, vm_filter.status
            tenant_id, host = vm_filter.tenant_id, vm_filter.host
            for position in range(start, len(rows)):
                row = rows[position]
                if (
                    (state is not None and row.state != state)
                    or (status is not None and row.status != status)
                    or (tenant_id is not None and row.tenant_id != tenant_id)
                    or (host is not None and row.host != host)
                ):
                    continue
                if len(summaries) == limit:
                    # One more match exists, so the page is not the last.
                    return VmPage(summaries, last_id)
                summaries.append(row.summary_json)
                last_id = row.instance_id
            return VmPage(summaries, None)

    @staticmethod
    def _candidate_rows(vim: _Vim, vm_filter: VmFilter) -> list[_VmRow]:
        """The rows a filtered scan must look at, in instance_id order: a few from the indexes
        when the state or status filter is selective, otherwise the whole VIM."""
        buckets = []
        if vm_filter.state is not None:
            buckets.append(vim.by_state.get(vm_filter.state, set()))
        if vm_filter.status is not None:
            buckets.append(vim.by_status.get(vm_filter.status, set()))
        if buckets:
            smallest = min(buckets, key=len)
            if len(smallest) * 8 < len(vim.rows):
                return [vim.rows[instance_id] for instance_id in sorted(smallest)]
        return vim.sorted_rows()

    def matching(self, vim_id: str, vm_states: Collection[str], kinds: Collection[str]) -> list[bytes] | None:
        """Summaries of the VMs whose vm_state is in `vm_states` or whose last status kind is in
        `kinds`, in instance_id order; None if the VIM is unknown. Both must be normalised."""
        with self._lock:
            vim = self._vims.get(vim_id)
            if vim is None:
                return None
            buckets = [vim.by_state[s] for s in vm_states if s in vim.by_state]
            buckets += [vim.by_status[k] for k in kinds if k in vim.by_status]
            # Each index partitions the VIM, so this is exact unless both indexes are asked.
            at_most = sum(len(bucket) for bucket in buckets)
            if not at_most:
                return []
            if at_most * 8 < len(vim.rows):
                matched = set().union(*buckets) if len(buckets) > 1 else buckets[0]
                rows = vim.rows
                return [rows[instance_id].summary_json for instance_id in sorted(matched)]
            ordered = vim.sorted_rows()
            if at_most == len(vim.rows) and not (vm_states and kinds):
                return [row.summary_json for row in ordered]
            wanted_states, wanted_kinds = frozenset(vm_states), frozenset(kinds)
            return [
                row.summary_json
                for row in ordered
                if row.state in wanted_states or row.status in wanted_kinds
            ]
