"""The state record: the latest event of one VM on the compacted state topic. Pure, no I/O.

The stream worker writes it and the API reads it; this module is the contract between them.

key     "{vim_id}/{instance_id}", UTF-8
value   the event's JSON form (see streams.codecs.event_to_json_dict) plus the worker's own
        bookkeeping under META: {"version": [updated_at, occurred_at], "source": {"topic": ...,
        "partition": ..., "offset": ..., "index": ...}}, where source is the raw record (and its
        line) that produced it, plus the VM's VES alarms while raised ("alarm": the VM failure,
        "action_alarm": a failed action) and what its last event did in VES ("ves"), see
        streams.ves; the actions started and not yet ended
        ("pending": kind -> start, deadline, whether stuck was raised) and the stuck alarms the
        last event cleared ("stuck_cleared"), see streams.stuck. A fired timer rewrites the
        record with only "pending" changed;
        None (a tombstone) once a deleted VM's retention has passed
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# A VIM id is ONAP's {cloud-owner}_{cloud-region-id}.
VIM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*_[A-Za-z0-9._-]+$"

META = "eventfed"
DELETED_STATE = "deleted"

_VIM_ID_RE = re.compile(VIM_ID_PATTERN)


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
