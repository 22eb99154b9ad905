"""The raw record: one Nova notification as the listener writes it to Kafka. Pure, no I/O.

value   the whole notification as JSON (event_type, publisher_id, priority, payload, message_id,
        timestamp, the request context without secrets) plus vim_id and received_at
key     the instance uuid, so every event of one VM stays in order on one partition; a
        notification about something else is keyed by its publisher_id
headers vim_id, event_type, message_id
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

HEADER_VIM_ID = "vim_id"
HEADER_EVENT_TYPE = "event_type"
HEADER_MESSAGE_ID = "message_id"
HEADER_REASON = "eventfed.reason"
HEADER_ERROR = "eventfed.error"
HEADER_STAGE = "eventfed.stage"
HEADER_SOURCE_TOPIC = "eventfed.source.topic"
HEADER_SOURCE_PARTITION = "eventfed.source.partition"
HEADER_SOURCE_OFFSET = "eventfed.source.offset"
HEADER_ORIGINAL_SIZE = "eventfed.original.size"

# Context keys that carry credentials or bulky catalogues: never written to Kafka.
_SECRET_MARKERS = ("token", "password", "secret", "credential", "service_catalog", "auth_plugin")

Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True, slots=True)
class RawRecord:
    key: bytes
    value: bytes
    headers: Headers


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that cannot be written as a raw record; it goes to the dead-letter topic."""

    key: bytes | None
    value: bytes
    headers: Headers
    reason: str


def scrub_context(context: Any) -> dict[str, Any]:
    if not isinstance(context, Mapping):
        return {}
    return {
        str(k): v
        for k, v in context.items()
        if not any(marker in str(k).lower() for marker in _SECRET_MARKERS)
    }


def record_key(event_type: Any, payload: Any, publisher_id: Any) -> bytes:
    """The instance uuid of an instance notification, else the publisher id."""
    if isinstance(payload, Mapping):
        instance_id = payload.get("instance_id")
        if not instance_id:
            data = payload.get("nova_object.data")
            if isinstance(data, Mapping):
                instance_id = data.get("uuid")
        if isinstance(instance_id, str) and instance_id:
            return instance_id.encode()
    return str(publisher_id or event_type or "unknown").encode()


def _headers(vim_id: str, event_type: Any, message_id: Any) -> Headers:
    return [
        (HEADER_VIM_ID, vim_id.encode()),
        (HEADER_EVENT_TYPE, str(event_type or "").encode()),
        (HEADER_MESSAGE_ID, str(message_id or "").encode()),
    ]


def raw_document(
    *,
    vim_id: str,
    received_at: datetime,
    event_type: Any,
    publisher_id: Any,
    priority: str,
    payload: Any,
    message_id: Any,
    timestamp: Any,
    context: Any = None,
) -> dict[str, Any]:
    """The raw record's value, before encoding: the one definition of its fields."""
    return {
        "vim_id": vim_id,
        "received_at": received_at.isoformat(),
        "event_type": event_type,
        "publisher_id": publisher_id,
        "priority": priority.upper(),
        "payload": payload,
        "message_id": message_id,
        "timestamp": timestamp,
        "context": scrub_context(context),
    }


def build_raw_record(
    message: Mapping[str, Any],
    priority: str,
    vim_id: str,
    received_at: datetime,
    max_bytes: int,
) -> RawRecord | DeadLetter:
    """Turn one oslo message dict (ctxt, publisher_id, event_type, payload, metadata) into a record."""
    metadata = message.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        metadata = {}
    event_type = message.get("event_type")
    publisher_id = message.get("publisher_id")
    payload = message.get("payload")
    message_id = metadata.get("message_id")
    document = raw_document(
        vim_id=vim_id,
        received_at=received_at,
        event_type=event_type,
        publisher_id=publisher_id,
        priority=priority,
        payload=payload,
        message_id=message_id,
        timestamp=metadata.get("timestamp"),
        context=message.get("ctxt"),
    )
    key = record_key(event_type, payload, publisher_id)
    headers = _headers(vim_id, event_type, message_id)
    try:
        value = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        fallback = json.dumps(document, default=repr, separators=(",", ":")).encode()
        return _dead(key, fallback, headers, "not_serializable", str(exc), max_bytes)
    if len(value) > max_bytes:
        return _dead(
            key, value, headers, "oversize", f"{len(value)} bytes exceeds the limit of {max_bytes}", max_bytes
        )
    return RawRecord(key, value, headers)


def _dead(key: bytes, value: bytes, headers: Headers, reason: str, detail: str, max_bytes: int) -> DeadLetter:
    extra: Headers = [
        (HEADER_REASON, reason.encode()),
        (HEADER_ERROR, detail[:500].encode()),
        (HEADER_STAGE, b"listen"),
        (HEADER_ORIGINAL_SIZE, str(len(value)).encode()),
    ]
    # The dead-letter topic has the same size limit: keep the head of the message for diagnosis.
    return DeadLetter(key, value[: max_bytes - 1024], headers + extra, reason)
