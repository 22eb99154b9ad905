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
import heapq
import json
import logging
import sys
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import orjson
from sortedcontainers import SortedKeyList, SortedList

from schemas.api_status import status_or_unknown
from schemas.state import is_flow_key, parse_state_key

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

# Nova writes a VM's own times three ways (legacy "2018-03-07T05:59:46.000000" or "", versioned
# "2018-03-07T05:59:46Z", str(utcnow()) "2018-03-07 05:59:46"); events and the state record keep
# them as sent (the ONAP spec's contract), a summary shows them as it shows occurred_at.
_NOVA_TIME_SUMMARY_FIELDS = frozenset({"launched_at"})

# Where a VM's state is missing, the per-state counts of /vims file it under this name.
UNKNOWN_STATE = "unknown"


class ApplyOutcome(enum.Enum):
    UPSERTED = "upserted"
    REMOVED = "removed"
    MALFORMED = "malformed"
    # A record of the stream worker's own on the topic (schemas.state.is_flow_key), not a VM's.
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    outcome: ApplyOutcome
    # Why a record was skipped ("key", "json", "mismatch"); empty for applied records.
    reason: str = ""


class _MalformedRecord(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


# Identity, not field equality: rows are found again in `_Vim.order` by identity.
@dataclass(slots=True, eq=False)
class _VmRow:
    instance_id: str
    # Normalised for matching: vm_state lower-case, status kind upper-case.
    state: str | None
    status: str | None
    tenant_id: str | None
    host: str | None
    summary_json: bytes
    record_json: bytes
    # Nova's API status (schemas.api_status), UNKNOWN without a vm_state: the fleet metrics.
    api_status: str

    def update_from(self, newer: _VmRow) -> None:
        # In place: the row keeps its slot in `_Vim.order`, whose key never changes.
        self.state, self.status, self.api_status = newer.state, newer.status, newer.api_status
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
    # VMs that pass the filter in the whole VIM, over all pages.
    total: int


@dataclass(frozen=True, slots=True)
class MatchPage:
    """A page of check_vim_status: the summaries after the marker, and how many match in all."""

    summaries: list[bytes]
    next_marker: str | None
    total: int


def _new_order() -> Any:
    return SortedKeyList(key=_row_key)


@dataclass(slots=True)
class _Vim:
    rows: dict[str, _VmRow] = field(default_factory=dict)
    # The rows in instance_id order, for paging and for answers in a stable order. It is kept
    # sorted on every write (O(log n) each), so a page is a bisect and a slice whatever the write
    # rate: sorting lazily at the next read made every read after a new VM pay for a pass over
    # the whole VIM. Scans walk rows here rather than looking ids up in `rows`.
    order: Any = field(default_factory=_new_order)  # SortedKeyList[_VmRow]
    # instance_ids per vm_state and per status kind, each in order, so a selective page is a
    # bisect into each asked bucket and a merge of the heads, not a sort of the matches.
    by_state: dict[str | None, Any] = field(default_factory=dict)  # SortedList[str]
    by_status: dict[str | None, Any] = field(default_factory=dict)  # SortedList[str]
    # VMs per (vm_state, status kind): the size of a union of state and kind buckets, which
    # overlap, without walking them.
    pairs: Counter[tuple[str | None, str | None]] = field(default_factory=Counter)
    api_statuses: Counter[str] = field(default_factory=Counter)
    last_event_at: datetime | None = None
    last_event_text: str | None = None

    def index(self, row: _VmRow) -> None:
        for index, value in ((self.by_state, row.state), (self.by_status, row.status)):
            members = index.get(value)
            if members is None:
                members = index[value] = SortedList()
            members.add(row.instance_id)
        self.pairs[(row.state, row.status)] += 1

    def unindex(self, row: _VmRow) -> None:
        for index, value in ((self.by_state, row.state), (self.by_status, row.status)):
            members = index.get(value)
            if members is not None:
                members.discard(row.instance_id)
                if not members:
                    del index[value]
        pair = (row.state, row.status)
        self.pairs[pair] -= 1
        if self.pairs[pair] <= 0:
            del self.pairs[pair]

    def matching_count(self, vm_states: Collection[str], kinds: Collection[str]) -> int:
        if not kinds:
            return sum(len(self.by_state[state]) for state in vm_states if state in self.by_state)
        if not vm_states:
            return sum(len(self.by_status[kind]) for kind in kinds if kind in self.by_status)
        return sum(
            count for (state, status), count in self.pairs.items() if state in vm_states or status in kinds
        )


def _ids_after(members: Any, marker: str | None) -> Iterator[str]:
    """The ids of a SortedList after `marker`, in order."""
    if marker is None:
        return iter(members)
    return members.irange(marker, inclusive=(False, True))


def _rows_after(order: Any, marker: str | None) -> Iterator[_VmRow]:
    """The rows of a VIM's order after `marker`, in order."""
    if marker is None:
        return iter(order)
    return order.irange_key(marker, inclusive=(False, True))


def _distinct(ids: Iterable[str]) -> Iterator[str]:
    # A merge of a state bucket and a kind bucket meets a VM in both once each, side by side.
    last = None
    for instance_id in ids:
        if instance_id != last:
            yield instance_id
            last = instance_id


def _take(rows: Iterable[_VmRow], limit: int | None) -> tuple[list[bytes], str | None]:
    """Up to `limit` summaries (all for None) and the next marker: one more row is read to tell
    whether a next page exists, so a full last page says so rather than leading to an empty one."""
    if limit is None:
        return [row.summary_json for row in rows], None
    taken = list(islice(rows, limit + 1))
    if len(taken) <= limit:
        return [row.summary_json for row in taken], None
    del taken[limit:]
    return [row.summary_json for row in taken], taken[-1].instance_id


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; a record holding them could not be served verbatim.
    raise ValueError(f"{name} is not valid JSON")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _summary_value(name: str, value: Any) -> Any:
    if name in _NOVA_TIME_SUMMARY_FIELDS:
        return summary_time(value)
    if isinstance(value, str) or value is None:
        return value
    if name in _SCALAR_SUMMARY_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _interned(value: str | None) -> str | None:
    # Tenants, hosts, states and kinds repeat across thousands of VMs; one copy each.
    return sys.intern(value) if value is not None else None


def summary_time(value: Any) -> str | None:
    """A Nova time as the summaries' other times are written (``YYYY-MM-DDTHH:MM:SS.ffffffZ``,
    UTC); None for none ("" or null) and for text that is no time."""
    parsed = _parse_time(value)
    if parsed is None:
        return None
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Naive and aware datetimes do not compare; the contract's times are UTC.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _loads(value: bytes | str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        # orjson refuses a few records that the json module reads (integers beyond 64 bits,
        # UTF-16 or UTF-32 text, lone surrogate escapes); they were served before, so they still
        # are. Anything else it refuses is malformed here too, and only this rare path pays twice.
        return json.loads(value, parse_constant=_reject_constant)


def _dumps(summary: dict[str, Any]) -> bytes:
    try:
        # A copy of exactly the encoded size: orjson's own bytes object is its output buffer cut
        # down in place, and keeping 100,000 of them left the rest of each buffer as heap
        # fragments that nothing reused (about 8 KB per VM, 800 MB of RSS for 100,000 VMs).
        return bytes(memoryview(orjson.dumps(summary)))
    except orjson.JSONEncodeError:
        # A lone surrogate or an integer beyond 64 bits from the fallback parse: the json
        # module writes both as valid JSON when it escapes everything outside ASCII.
        return json.dumps(summary, separators=(",", ":")).encode("ascii")


def _build_row(vim_id: str, instance_id: str, value: bytes | str) -> tuple[_VmRow, Any]:
    try:
        record = _loads(value)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
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
        summary_json=_dumps(summary),
        record_json=record_json,
        api_status=sys.intern(status_or_unknown(state, _text(record.get("task_state")))),
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
            if is_flow_key(key):
                return self._count(ApplyResult(ApplyOutcome.SKIPPED))
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
        vim.api_statuses[row.api_status] += 1
        if current is not None:
            vim.api_statuses[current.api_status] -= 1
            if not vim.api_statuses[current.api_status]:
                del vim.api_statuses[current.api_status]
        if current is None:
            vim.rows[instance_id] = row
            vim.order.add(row)
            vim.index(row)
            self._vm_count += 1
        elif current.state == row.state and current.status == row.status:
            # Most updates leave both indexes as they were; only moves pay for the buckets.
            current.update_from(row)
        else:
            vim.unindex(current)
            current.update_from(row)
            vim.index(current)
        if occurred is not None and (vim.last_event_at is None or occurred > vim.last_event_at):
            vim.last_event_at, vim.last_event_text = occurred, occurred_text

    def _remove(self, vim_id: str, instance_id: str) -> None:
        # A tombstone names its VIM, so the VIM stays known even when its last VM goes.
        vim = self._vim(vim_id)
        row = vim.rows.pop(instance_id, None)
        if row is None:
            return
        vim.unindex(row)
        vim.order.remove(row)
        vim.api_statuses[row.api_status] -= 1
        if not vim.api_statuses[row.api_status]:
            del vim.api_statuses[row.api_status]
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

    def api_status_counts(self) -> dict[str, dict[str, int]]:
        """VMs per VIM and Nova API status (UNKNOWN: known from samples only, no vm_state yet)."""
        with self._lock:
            return {vim_id: dict(vim.api_statuses) for vim_id, vim in self._vims.items()}

    def last_event_times(self) -> dict[str, float]:
        """Per VIM with any, the time of its latest event (epoch seconds)."""
        with self._lock:
            return {
                vim_id: vim.last_event_at.timestamp()
                for vim_id, vim in self._vims.items()
                if vim.last_event_at is not None
            }

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
            summaries, next_marker = _take(self._filtered_rows(vim, vm_filter, marker), limit)
            return VmPage(summaries, next_marker, self._matching_rows(vim, vm_filter))

    def _matching_rows(self, vim: _Vim, vm_filter: VmFilter) -> int:
        """How many rows pass the filter: from the index sizes when one index answers it, else by
        going through the smaller bucket (a tenant or host filter, or both state and status)."""
        if vm_filter.tenant_id is None and vm_filter.host is None:
            if vm_filter.state is None and vm_filter.status is None:
                return len(vim.rows)
            if vm_filter.status is None:
                return len(vim.by_state.get(vm_filter.state) or ())
            if vm_filter.state is None:
                return len(vim.by_status.get(vm_filter.status) or ())
        return sum(1 for _row in self._filtered_rows(vim, vm_filter, None))

    @staticmethod
    def _filtered_rows(vim: _Vim, vm_filter: VmFilter, marker: str | None) -> Iterator[_VmRow]:
        """The rows after `marker` that pass the filter, in instance_id order, read lazily: from
        the smaller index bucket when state or status is asked for, else from the whole VIM."""
        buckets: list[Any] = []
        if vm_filter.state is not None:
            buckets.append(vim.by_state.get(vm_filter.state))
        if vm_filter.status is not None:
            buckets.append(vim.by_status.get(vm_filter.status))
        if any(bucket is None for bucket in buckets):
            return iter(())
        if buckets:
            smallest = min(buckets, key=len)
            rows: Iterator[_VmRow] = map(vim.rows.__getitem__, _ids_after(smallest, marker))
        else:
            rows = _rows_after(vim.order, marker)
        state, status = vm_filter.state, vm_filter.status
        tenant_id, host = vm_filter.tenant_id, vm_filter.host
        if len(buckets) <= 1 and tenant_id is None and host is None:
            return rows
        return (
            row
            for row in rows
            if (state is None or row.state == state)
            and (status is None or row.status == status)
            and (tenant_id is None or row.tenant_id == tenant_id)
            and (host is None or row.host == host)
        )

    def matching_page(
        self,
        vim_id: str,
        vm_states: Collection[str],
        kinds: Collection[str],
        marker: str | None = None,
        limit: int | None = None,
    ) -> MatchPage | None:
        """Up to `limit` (None: all) summaries of the VMs after `marker` whose vm_state is in
        `vm_states` or whose last status kind is in `kinds`, in instance_id order, and how many
        match in the whole VIM; None if the VIM is unknown. Both sets must be normalised.

        The cost is a bisect per asked bucket plus the page itself, whatever the VIM's size.
        """
        vm_states, kinds = frozenset(vm_states), frozenset(kinds)
        with self._lock:
            vim = self._vims.get(vim_id)
            if vim is None:
                return None
            total = vim.matching_count(vm_states, kinds)
            if not total:
                return MatchPage([], None, 0)
            rows: Iterator[_VmRow]
            if total == len(vim.rows):
                rows = _rows_after(vim.order, marker)
            else:
                buckets = [vim.by_state[state] for state in vm_states if state in vim.by_state]
                buckets += [vim.by_status[kind] for kind in kinds if kind in vim.by_status]
                heads = [_ids_after(bucket, marker) for bucket in buckets]
                ids = heads[0] if len(heads) == 1 else heapq.merge(*heads)
                if vm_states and kinds:
                    ids = _distinct(ids)
                rows = map(vim.rows.__getitem__, ids)
            summaries, next_marker = _take(rows, limit)
            return MatchPage(summaries, next_marker, total)

    def matching(self, vim_id: str, vm_states: Collection[str], kinds: Collection[str]) -> list[bytes] | None:
        """Every matching summary (see matching_page), in instance_id order; None if the VIM is
        unknown."""
        page = self.matching_page(vim_id, vm_states, kinds)
        return None if page is None else page.summaries
