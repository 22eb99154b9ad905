"""A server read from Nova's API as a raw record, and the polling window. Pure: no I/O, no clock.

A snapshot's message id is a digest of what makes it a distinct change (the VIM, the server id,
its `updated` time, status, vm_state, task_state and host), so a server read again unchanged, in
the overlap of two cycles or after a restart, has the same id and the stream worker drops it as
a duplicate; a server that changed has a new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.raw import POLLED_EVENT_TYPE, SOURCE_POLL, DeadLetter, RawRecord, build_raw_record

VM_STATE = "OS-EXT-STS:vm_state"
TASK_STATE = "OS-EXT-STS:task_state"
HOST = "OS-EXT-SRV-ATTR:host"


def message_id(vim_id: str, server: Mapping[str, Any]) -> str:
    parts = (
        vim_id,
        server.get("id"),
        server.get("updated"),
        server.get("status"),
        server.get(VM_STATE),
        server.get(TASK_STATE),
        server.get(HOST),
    )
    digest = hashlib.sha256("\x1f".join(str(p or "") for p in parts).encode()).hexdigest()
    return f"poll-{digest[:32]}"


def polled_record(
    vim_id: str, server: Mapping[str, Any], received_at: datetime, max_bytes: int
) -> RawRecord | DeadLetter:
    """The raw record of one server snapshot (schemas.raw), keyed by the server id."""
    message = {
        "event_type": POLLED_EVENT_TYPE,
        "publisher_id": f"eventfed-poll:{vim_id}",
        "payload": dict(server),
        "metadata": {"message_id": message_id(vim_id, server), "timestamp": server.get("updated")},
        "ctxt": {},
    }
    return build_raw_record(message, "INFO", vim_id, received_at, max_bytes, source=SOURCE_POLL)


def parse_api_time(value: object) -> datetime | None:
    """A time as Nova's API writes it (`2026-11-29T08:00:05Z`, with or without a fraction or
    zone), as an aware UTC datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def api_time(value: datetime) -> str:
    """The changes-since value: Nova reads ISO 8601; whole seconds, as its own `updated`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def changes_since(high_water: datetime, overlap_seconds: float) -> datetime:
    """Where the next cycle starts: the last successful cycle's start on Nova's clock, less the
    overlap that covers skew between Nova's hosts and changes committed while a cycle ran."""
    return high_water - timedelta(seconds=overlap_seconds)


def next_high_water(
    previous: datetime | None, nova_date: datetime | None, newest_updated: datetime | None
) -> datetime | None:
    """The high-water mark a successful cycle leaves: the time Nova's API gave when the cycle
    started (its HTTP Date), else the newest `updated` it read; never earlier than before."""
    candidate = nova_date or newest_updated
    if candidate is None:
        return previous
    if previous is not None and candidate < previous:
        return previous
    return candidate
