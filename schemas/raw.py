"""The raw topic's records: Nova notifications as the listener writes them to Kafka. Pure, no I/O.

One notification is a document (`raw_document`): the whole notification as JSON (event_type,
publisher_id, priority, payload, message_id, timestamp, the request context without secrets) plus
vim_id and received_at, keyed by the instance uuid (a notification about something else by its
publisher_id), so every event of one VM stays in order on one partition.

A Kafka record of the raw topic carries one notification, or several packed together:
- one: value the document as JSON (UTF-8, compact), key its key, headers vim_id, event_type and
  message_id;
- packed (`pack`): the documents of one listener batch that land on the same partition, in the
  order received, as JSON Lines (one document per line, UTF-8, no line breaks inside a document),
  on the partition Kafka's murmur2 partitioner gives their keys, so per-VM order is the same as if
  each had its own record. Key: the instance uuid when they all share it, else none. Headers:
  vim_id, `eventfed.count` (the number of lines) and content-type application/x-ndjson.
The stream stage pays Faust's per-record cost once per packed record instead of once per
notification. `unpack` turns either form back into one (key, value, headers) per notification,
exactly as the single form would have had them; `eventfed decode --format raw` shows them.

`eventfed poll` writes the same documents for the servers it reads from Nova's API: event_type
POLLED_EVENT_TYPE, payload the server as `GET /servers/detail` shows it, timestamp its `updated`,
a message id derived from the snapshot (so a server read again unchanged has the same one),
key the server id (the instance uuid, as a notification's), field and header `source: poll`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from schemas.dead_letter import (
    HEADER_ERROR,
    HEADER_ORIGINAL_SIZE,
    HEADER_REASON,
    HEADER_SOURCE_INDEX,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    HEADER_STAGE,
    STAGE_LISTEN,
    Headers,
    dead_letter_headers,
)

# Re-exported: readers of the raw topic and of dead letters find every header name here.
__all__ = [
    "HEADER_ERROR",
    "HEADER_ORIGINAL_SIZE",
    "HEADER_REASON",
    "HEADER_SOURCE_INDEX",
    "HEADER_SOURCE_OFFSET",
    "HEADER_SOURCE_PARTITION",
    "HEADER_SOURCE_TOPIC",
    "HEADER_STAGE",
    "Headers",
]

HEADER_VIM_ID = "vim_id"
HEADER_EVENT_TYPE = "event_type"
HEADER_MESSAGE_ID = "message_id"
HEADER_COUNT = "eventfed.count"
HEADER_CONTENT_TYPE = "content-type"
HEADER_SOURCE = "source"
SOURCE_POLL = "poll"
# The event_type of a server snapshot read from Nova's API by `eventfed poll`.
POLLED_EVENT_TYPE = "eventfed.server.polled"
PACKED_CONTENT_TYPE = b"application/x-ndjson"

# Context keys that carry credentials or bulky catalogues: never written to Kafka.
_SECRET_MARKERS = ("token", "password", "secret", "credential", "service_catalog", "auth_plugin")
# Whether a context key (a string) is written: a context has the same few dozen keys every time,
# so each is looked at once. Bounded, in case a sender makes up keys.
_KEEP_KEY: dict[str, bool] = {}
_KEEP_KEY_MAX: Final = 4096

# orjson refuses, instead of writing them its own way, the types the standard library writes
# otherwise or not at all (datetimes, dataclasses, subclasses of str, int, dict and list).
_ORJSON_OPTIONS: Final = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
)


@dataclass(frozen=True, slots=True)
class RawRecord:
    key: bytes
    value: bytes
    headers: Headers


@dataclass(frozen=True, slots=True)
class PackedRecord:
    """One Kafka record of the raw topic: a single raw record, or several of one partition."""

    partition: int | None  # None: the producer's partitioner decides from the key
    key: bytes | None
    value: bytes
    headers: Headers
    members: tuple[int, ...]  # positions of the raw records it carries, in the batch given to pack


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that cannot be written as a raw record; it goes to the dead-letter topic."""

    key: bytes | None
    value: bytes
    headers: Headers
    reason: str


def _keep_key(key: Any) -> bool:
    if type(key) is str:
        keep = _KEEP_KEY.get(key)
        if keep is None:
            keep = not any(marker in key.lower() for marker in _SECRET_MARKERS)
            if len(_KEEP_KEY) < _KEEP_KEY_MAX:
                _KEEP_KEY[key] = keep
        return keep
    return not any(marker in str(key).lower() for marker in _SECRET_MARKERS)


def scrub_context(context: Any) -> dict[str, Any]:
    # A dict is told apart without the Mapping ABC's isinstance, which costs ten times more.
    if type(context) is not dict and not isinstance(context, Mapping):
        return {}
    return {str(k): v for k, v in context.items() if _keep_key(k)}


def encode_document(document: Mapping[str, Any]) -> bytes:
    """A raw document as compact UTF-8 JSON; TypeError or ValueError when it cannot be JSON.

    What ``json.dumps(document, separators=(",", ":"), allow_nan=False)`` accepts and writes, as
    equal JSON (non-ASCII characters as UTF-8 rather than escaped, floats in orjson's shortest
    form), through orjson, about a fifth of the time. orjson writes NaN and infinities as null and
    the Python types it knows but JSON does not (UUIDs, enums) its own way, so its result counts
    only when reading it back gives the document again; else, and for what orjson refuses
    (integers past 64 bits, keys that are not strings, lone surrogates, nesting past 255), the
    standard library writes it, or refuses it, exactly as json.dumps does.
    """
    try:
        value = orjson.dumps(document, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        pass
    else:
        if orjson.loads(value) == document:
            return value
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


# Ceilometer's sample notifications (priority SAMPLE on its exchange): the notification agent's
# notifier:// publisher sends event_type "metering" with the samples as a bare list, the polling
# agents send "telemetry.polling" with {"samples": [...]} (ceilometer 27, observed on the bus).
SAMPLE_EVENT_TYPES: Final = frozenset({"metering", "telemetry.polling"})


def samples_of(event_type: Any, payload: Any) -> list[Any] | None:
    """The samples a sample notification carries, or None when it is none or has no list."""
    if event_type == "metering":
        return payload if type(payload) is list else None
    if event_type == "telemetry.polling" and type(payload) is dict:
        samples = payload.get("samples")
        return samples if type(samples) is list else None
    return None


def sample_instance(sample: Any) -> str | None:
    """The instance a sample is about: its metadata's instance_id (per-device and per-NIC meters
    name the device in resource_id), else its resource_id."""
    if type(sample) is not dict:
        return None
    metadata = sample.get("resource_metadata")
    instance_id = metadata.get("instance_id") if type(metadata) is dict else None
    if not (isinstance(instance_id, str) and instance_id):
        instance_id = sample.get("resource_id")
    return instance_id if isinstance(instance_id, str) and instance_id else None


def split_samples(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A sample notification as one message per instance, in order, each with its share of the
    samples in the payload's own shape, so each is keyed, and ordered, with its VM's events. A
    message that is no sample notification, or names one instance, comes back as it is."""
    event_type = message.get("event_type")
    samples = samples_of(event_type, message.get("payload"))
    if not samples:
        return [message]
    by_instance: dict[str | None, list[Any]] = {}
    for sample in samples:
        by_instance.setdefault(sample_instance(sample), []).append(sample)
    if len(by_instance) == 1:
        return [message]
    return [
        {
            **message,
            "payload": share if event_type == "metering" else {**message["payload"], "samples": share},
        }
        for share in by_instance.values()
    ]


def record_key(event_type: Any, payload: Any, publisher_id: Any) -> bytes:
    """The instance uuid of an instance notification (a polled server's id, a sample's instance),
    else the publisher id."""
    if event_type in SAMPLE_EVENT_TYPES:
        samples = samples_of(event_type, payload)
        instance = sample_instance(samples[0]) if samples else None
        if instance is not None:
            return instance.encode()
    is_mapping = type(payload) is dict or isinstance(payload, Mapping)
    if event_type == POLLED_EVENT_TYPE and is_mapping:
        server_id = payload.get("id")
        if isinstance(server_id, str) and server_id:
            return server_id.encode()
    if is_mapping:
        instance_id = payload.get("instance_id")
        if not instance_id:
            data = payload.get("nova_object.data")
            if type(data) is dict or isinstance(data, Mapping):
                instance_id = data.get("uuid")
        if isinstance(instance_id, str) and instance_id:
            return instance_id.encode()
    return str(publisher_id or event_type or "unknown").encode()


def _headers(vim_id: str, event_type: Any, message_id: Any, source: str | None = None) -> Headers:
    headers: Headers = [
        (HEADER_VIM_ID, vim_id.encode()),
        (HEADER_EVENT_TYPE, str(event_type or "").encode()),
        (HEADER_MESSAGE_ID, str(message_id or "").encode()),
    ]
    if source:
        headers.append((HEADER_SOURCE, source.encode()))
    return headers


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
    source: str | None = None,
) -> dict[str, Any]:
    """The raw record's value, before encoding: the one definition of its fields. `source` is
    set (to SOURCE_POLL) only on what did not come from the notification bus."""
    document = {
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
    if source:
        document["source"] = source
    return document


def build_raw_record(
    message: Mapping[str, Any],
    priority: str,
    vim_id: str,
    received_at: datetime,
    max_bytes: int,
    source: str | None = None,
) -> RawRecord | DeadLetter:
    """Turn one oslo message dict (ctxt, publisher_id, event_type, payload, metadata) into a record."""
    metadata = message.get("metadata") or {}
    if type(metadata) is not dict and not isinstance(metadata, Mapping):
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
        source=source,
    )
    key = record_key(event_type, payload, publisher_id)
    headers = _headers(vim_id, event_type, message_id, source)
    try:
        value = encode_document(document)
    except (TypeError, ValueError) as exc:
        fallback = json.dumps(document, default=repr, separators=(",", ":")).encode()
        return _dead(key, fallback, headers, "not_serializable", str(exc), max_bytes)
    if len(value) > max_bytes:
        return _dead(
            key, value, headers, "oversize", f"{len(value)} bytes exceeds the limit of {max_bytes}", max_bytes
        )
    return RawRecord(key, value, headers)


def _dead(key: bytes, value: bytes, headers: Headers, reason: str, detail: str, max_bytes: int) -> DeadLetter:
    extra = dead_letter_headers(reason, detail, STAGE_LISTEN, original_size=len(value))
    # The dead-letter topic has the same size limit: keep the head of the message for diagnosis.
    return DeadLetter(key, value[: max_bytes - 1024], headers + extra, reason)


def pack(
    records: Sequence[RawRecord],
    partition_of: Callable[[bytes], int] | None,
    max_records: int,
    max_bytes: int,
) -> list[PackedRecord]:
    """The Kafka records for a batch: its raw records grouped by partition, in batch order, at most
    `max_records` and `max_bytes` each. Without `partition_of` (the partition count is not known)
    or with max_records 1, every raw record is its own Kafka record, keyed as usual: both forms
    land a key on the same partition, so they may follow each other."""
    if partition_of is None or max_records <= 1:
        return [PackedRecord(None, r.key, r.value, r.headers, (i,)) for i, r in enumerate(records)]
    by_partition: dict[int, list[int]] = {}
    for index, record in enumerate(records):
        by_partition.setdefault(partition_of(record.key), []).append(index)
    packed: list[PackedRecord] = []
    for partition, members in by_partition.items():
        chunk: list[int] = []
        size = 0
        for index in members:
            length = len(records[index].value) + 1
            if chunk and (len(chunk) >= max_records or size + length > max_bytes):
                packed.append(_packed(partition, records, chunk))
                chunk, size = [], 0
            chunk.append(index)
            size += length
        packed.append(_packed(partition, records, chunk))
    return packed


def _packed(partition: int, records: Sequence[RawRecord], members: list[int]) -> PackedRecord:
    first = records[members[0]]
    if len(members) == 1:
        return PackedRecord(partition, first.key, first.value, first.headers, (members[0],))
    chosen = [records[i] for i in members]
    keys = {r.key for r in chosen}
    headers: Headers = [h for h in first.headers if h[0] == HEADER_VIM_ID]
    headers += [(HEADER_COUNT, str(len(members)).encode()), (HEADER_CONTENT_TYPE, PACKED_CONTENT_TYPE)]
    value = b"\n".join([r.value for r in chosen])
    return PackedRecord(partition, first.key if len(keys) == 1 else None, value, headers, tuple(members))


def is_packed(headers: Any) -> bool:
    """Whether a raw record's headers (a list of pairs or a mapping, as clients give them) say
    it carries several notifications."""
    if not headers:
        return False
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return any(name == HEADER_COUNT for name, _value in pairs)


def documents(value: bytes, headers: Any) -> list[bytes]:
    """The notification documents a raw record carries, as JSON bytes, in order."""
    if not is_packed(headers):
        return [value]
    return [line for line in value.split(b"\n") if line.strip()]


def unpack(key: bytes | None, value: bytes, headers: Any) -> list[RawRecord]:
    """One raw record per notification, with the key and headers its single form has."""
    if not is_packed(headers):
        return [
            RawRecord(
                key or b"", value, list(headers.items() if isinstance(headers, Mapping) else headers or [])
            )
        ]
    unpacked = []
    for line in documents(value, headers):
        document = json.loads(line)
        unpacked.append(
            RawRecord(
                record_key(document.get("event_type"), document.get("payload"), document.get("publisher_id")),
                line,
                _headers(
                    str(document.get("vim_id") or ""),
                    document.get("event_type"),
                    document.get("message_id"),
                    document.get("source") if isinstance(document.get("source"), str) else None,
                ),
            )
        )
    return unpacked
