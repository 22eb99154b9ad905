"""The state record: the latest event of one VM on the compacted state topic. Pure, no I/O.

The stream worker writes it and the API reads it; this module is the contract between them.

key     "{vim_id}/{instance_id}", UTF-8
value   the event's JSON form (see streams.codecs.event_to_json_dict) plus the worker's own
        bookkeeping under META, typed below as `Bookkeeping`: the event's version (for ordering),
        the raw record it came from, what it did to the VM's VES alarms and the alarms standing
        (streams.ves), the actions started and not yet ended and the stuck alarms the event
        cleared (streams.stuck), the Ceilometer samples of its open measurement intervals
        (streams.metering). A fired timer rewrites the record with only "pending" changed;
        None (a tombstone) once a deleted VM's retention has passed

A VM known from Ceilometer's samples only (no event or poll yet) has a record with vim_id,
instance_id, tenant_id and host as the samples say, and the bookkeeping, but no vm_state
("state"), status or times: nothing is made up.

Besides the VMs, the topic holds one record per raw partition that is not a VM's: the stream
worker's event-flow counts of the open fleet intervals (streams.fleet), keyed FLOW_KEY_PREFIX +
the partition number, on that partition. Readers of VM states skip them (is_flow_key).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypedDict

# ONAP names a VIM "{cloud-owner}_{cloud-region-id}"; '/' would break state-topic keys and URLs.
VIM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*_[A-Za-z0-9._-]+$"

META = "eventfed"
DELETED_STATE = "deleted"

_VIM_ID_RE = re.compile(VIM_ID_PATTERN)


class SourceRecord(TypedDict):
    """The raw record (and its line in a packed record) a state came from."""

    topic: str
    partition: int
    offset: int
    index: int


class AlarmRecord(TypedDict, total=False):
    """A raised alarm: eventId, when raised (epoch µs), severity, the sourceName it was raised
    under, and for a failed action the kind whose success clears it."""

    event_id: str
    raised_at: int
    severity: str
    source_name: str
    kind: str


class AlarmStepRecord(TypedDict):
    """One alarm's transition (raise, clear, none) at the record's event, and the alarm concerned."""

    transition: str
    alarm: AlarmRecord | None


class StepRecord(TypedDict, total=False):
    """What the record's event did in VES: the VM failure (default rule) at the top level, the
    VM's API status before it, the event's VES sequence number, and the multicloud rule's and the
    failed action's steps when they have something to say."""

    transition: str
    alarm: AlarmRecord | None
    old_status: str | None
    sequence: int
    multicloud: AlarmStepRecord
    action: AlarmStepRecord


class PendingRecord(TypedDict, total=False):
    """An action started and not yet ended: its start, deadline (epoch µs) and stuck alarm."""

    event_type: str
    started_at: int
    deadline: int
    stuck: bool
    sequence: int | None
    after: float
    source_name: str


class ClearedRecord(PendingRecord, total=False):
    """A stuck alarm the record's event cleared, with the VES sequence its clear took."""

    kind: str
    clear_sequence: int


class Bookkeeping(TypedDict, total=False):
    """Everything the stream worker keeps with a VM's state, under META."""

    version: list[str]
    source: SourceRecord
    ves: StepRecord
    alarm: AlarmRecord
    action_alarm: AlarmRecord
    pending: dict[str, PendingRecord]
    stuck_cleared: list[ClearedRecord]
    # The VM's open measurement intervals of Ceilometer samples (layout in streams.metering).
    metering: dict[str, Any]


# '#' cannot start a VIM id (VIM_ID_PATTERN), so no VM's key looks like this.
FLOW_KEY_PREFIX = b"#fleet-flow/"


def flow_key(partition: int) -> bytes:
    return FLOW_KEY_PREFIX + str(partition).encode()


def is_flow_key(key: bytes | str | None) -> bool:
    if isinstance(key, str):
        key = key.encode("utf-8", "replace")
    return key is not None and key.startswith(FLOW_KEY_PREFIX)


def state_key(vim_id: str, instance_id: str) -> bytes:
    return f"{vim_id}/{instance_id}".encode()


def parse_state_key(key: bytes | str | None) -> tuple[str, str] | None:
    """(vim_id, instance_id) of a state-topic key, or None if it is not one."""
    if key is None:
        return None
    if isinstance(key, bytes):
        try:
            key = key.decode("utf-8")
        except UnicodeDecodeError:
            return None
    vim_id, slash, instance_id = key.partition("/")
    # An instance_id with '/' could never be addressed by the URL of the single-VM route.
    if not slash or not instance_id or "/" in instance_id or not instance_id.isprintable():
        return None
    if len(vim_id) > 200 or not _VIM_ID_RE.match(vim_id):
        return None
    return vim_id, instance_id


def source_of(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """The raw record a state came from, as written under META, or {} when it is unknown."""
    meta = state.get(META)
    source = meta.get("source") if isinstance(meta, Mapping) else None
    return source if isinstance(source, Mapping) else {}


def source_partition(state: Mapping[str, Any]) -> int | None:
    """The raw-topic partition a state came from: the state lives on the same partition."""
    partition = source_of(state).get("partition")
    return partition if isinstance(partition, int) and not isinstance(partition, bool) else None
