"""Wire formats of the VM status event, each with its decoder.

- ``avro``: Avro single-object encoding, ``C3 01`` + the schema's CRC-64-AVRO fingerprint (8 bytes,
  little-endian) + the Avro binary body. Self-describing enough for any Avro library, no registry.
- ``confluent``: the Confluent Schema Registry wire format (``00`` + 4-byte big-endian schema id +
  the Avro binary body), when a registry is configured. The schema id is the one the registry gave
  the event schema under the topic's subject, ``<topic>-value`` (TopicNameStrategy).
- ``json``: the flat shape of the ONAP spec message (spec fields plus event fields), UTF-8,
  timestamps as ISO 8601 with ``Z``; what the DMaaP and JSON sinks and the state topic carry.

The Avro body is fastavro's (``schemaless_writer`` with the schema parsed once); the single-object
framing around it is the specification's ten bytes, which fastavro does not write.

A string holding a lone surrogate (JSON can smuggle one in as ``"\\udXXX"``) cannot be encoded in
any of the formats; encoding such an event raises :class:`CodecError`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, cast

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from fastavro.validation import ValidationError, validate

from streams.normalise import VmStatusEvent

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

AVRO: Final = "avro"
CONFLUENT: Final = "confluent"
JSON: Final = "json"
AUTO: Final = "auto"
FORMATS: Final = (AVRO, CONFLUENT, JSON)

SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
CONFLUENT_MAGIC: Final = b"\x00"
DEFAULT_TOPIC: Final = "eventfed.vm.events"


class CodecError(ValueError):
    """Bytes that are not an event of this schema in the named format, or an event that cannot be
    encoded."""


SCHEMA_TEXT: Final = resources.files("schemas").joinpath("vm_status_event.avsc").read_text(encoding="utf-8")


def fingerprint_bytes(parsed_schema: Any) -> bytes:
    """The 8 bytes that follow ``C3 01``: CRC-64-AVRO of the Parsing Canonical Form, little-endian."""
    # fastavro already renders the fingerprint in the little-endian byte order of the Java library.
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed_schema), "CRC-64-AVRO"))


SCHEMA: Final[dict[str, Any]] = json.loads(SCHEMA_TEXT)
SCHEMA_JSON: Final = json.dumps(SCHEMA)
PARSED_SCHEMA: Final = parse_schema(SCHEMA)
CANONICAL_FORM: Final[str] = to_parsing_canonical_form(PARSED_SCHEMA)
FINGERPRINT: Final = fingerprint_bytes(PARSED_SCHEMA)
FINGERPRINT_HEX: Final = FINGERPRINT.hex()
FIELD_NAMES: Final = tuple(field["name"] for field in SCHEMA["fields"])
_HEADER: Final = SINGLE_OBJECT_MAGIC + FINGERPRINT
# Writer schemas this build can read, by fingerprint; an older schema version goes here when the
# schema evolves, so events already in Kafka stay readable.
_WRITER_SCHEMAS: Final[dict[bytes, Any]] = {FINGERPRINT: PARSED_SCHEMA}

_TIMESTAMP_FIELDS: Final = frozenset(
    field["name"]
    for field in SCHEMA["fields"]
    if any(
        isinstance(branch, dict) and branch.get("logicalType") == "timestamp-micros"
        for branch in (field["type"] if isinstance(field["type"], list) else [field["type"]])
    )
)
# Nested records (the fault), by field: their own field defaults, to fill a JSON object's gaps.
_RECORD_DEFAULTS: Final[dict[str, dict[str, Any]]] = {
    field["name"]: {inner["name"]: inner.get("default") for inner in branch["fields"]}
    for field in SCHEMA["fields"]
    for branch in (field["type"] if isinstance(field["type"], list) else [field["type"]])
    if isinstance(branch, dict) and branch.get("type") == "record"
}
_DEFAULTS: Final[dict[str, Any]] = {
    field["name"]: field["default"] for field in SCHEMA["fields"] if "default" in field
}


def avro_body(event: Mapping[str, Any]) -> bytes:
    """The Avro binary encoding of an event, without framing (fastavro's writer)."""
    buffer = io.BytesIO()
    try:
        schemaless_writer(buffer, PARSED_SCHEMA, event)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        # UnicodeEncodeError is a ValueError: a lone surrogate in a string lands here.
        raise CodecError(f"event does not fit the schema: {type(exc).__name__}: {exc}") from exc
    return buffer.getvalue()


# --- Avro single-object encoding ---------------------------------------------------------------


def encode_avro(event: Mapping[str, Any]) -> bytes:
    """Avro single-object encoding: ``C3 01``, the fingerprint, the body."""
    return _HEADER + avro_body(event)


def decode_avro(data: bytes) -> VmStatusEvent:
    if len(data) < 10 or data[:2] != SINGLE_OBJECT_MAGIC:
        raise CodecError("not Avro single-object encoding: it must start with C3 01 and a fingerprint")
    writer_schema = _WRITER_SCHEMAS.get(bytes(data[2:10]))
    if writer_schema is None:
        raise CodecError(
            f"unknown schema fingerprint {bytes(data[2:10]).hex()}: this build reads {FINGERPRINT_HEX} "
            "(VmStatusEvent); the event was written with another schema version"
        )
    stream = io.BytesIO(data)
    stream.seek(10)
    try:
        record = schemaless_reader(stream, writer_schema, PARSED_SCHEMA)
    except (EOFError, StopIteration, ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        raise CodecError(f"truncated or corrupt Avro body: {type(exc).__name__}: {exc}") from exc
    if stream.tell() != len(data):
        raise CodecError(f"{len(data) - stream.tell()} unexpected bytes after the Avro body")
    return cast(VmStatusEvent, record)


# --- JSON ---------------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    if value.tzinfo is UTC:
        # What normalise makes; isoformat ends it with "+00:00".
        return value.isoformat(timespec="microseconds")[:-6] + "Z"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


_PLAIN, _TIMESTAMP, _PROGRESS, _NESTED = range(4)
# One entry per field, decided once: the per-event loop then does no schema lookups.
_JSON_PLAN: Final = tuple(
    (
        name,
        _TIMESTAMP
        if name in _TIMESTAMP_FIELDS
        else _PROGRESS
        if name == "progress"
        else _NESTED
        if name in ("metadata", "image_meta", "fault")
        else _PLAIN,
        _DEFAULTS.get(name),
    )
    for name in FIELD_NAMES
)


# Every schema field with its default, in schema order: copied and updated with the event, it gives
# the JSON dict's keys in schema order and its gaps filled, at C speed.
_JSON_TEMPLATE: Final[dict[str, Any]] = {name: default for name, _, default in _JSON_PLAN}
_JSON_TIMESTAMPS: Final = tuple(name for name, kind, _ in _JSON_PLAN if kind == _TIMESTAMP)
_JSON_NESTED: Final = tuple(name for name, kind, _ in _JSON_PLAN if kind == _NESTED)


def event_to_json_dict(
    event: Mapping[str, Any], *, timestamp_texts: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The event as a JSON-ready dict in the spec's flat shape, keys in schema order.

    Timestamps become ISO 8601 strings with ``Z``; a null progress is ``""`` as in Nova's legacy
    notifications and the ONAP spec. ``timestamp_texts`` holds texts that ``normalise_with_texts``
    cut from the notification for this same event; a timestamp without one is formatted.
    """
    out = _JSON_TEMPLATE.copy()
    out.update(event)
    if len(out) != len(_JSON_TEMPLATE):
        return _json_dict_by_plan(event)
    for name in _JSON_TIMESTAMPS:
        value = out[name]
        if value is not None:
            text = timestamp_texts.get(name) if timestamp_texts else None
            out[name] = _iso(value) if text is None else text
    if out["progress"] is None:
        out["progress"] = ""
    for name in _JSON_NESTED:
        value = out[name]
        if value is not None:
            out[name] = dict(value)
    return out


def _json_dict_by_plan(event: Mapping[str, Any]) -> dict[str, Any]:
    """event_to_json_dict of an event with keys outside the schema, which it leaves out."""
    out: dict[str, Any] = {}
    get = event.get
    for name, kind, default in _JSON_PLAN:
        value = get(name, default)
        if kind == _PLAIN or value is None:
            out[name] = "" if value is None and kind == _PROGRESS else value
        elif kind == _TIMESTAMP:
            out[name] = _iso(value)
        elif kind == _NESTED:
            out[name] = dict(value)
        else:
            out[name] = value
    return out


def encode_json(event: Mapping[str, Any]) -> bytes:
    return encode_json_dict(event_to_json_dict(event))


# Types the standard library writes differently or not at all go to it instead (see encode_json_dict).
_ORJSON_OPTIONS: Final = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def encode_json_dict(json_dict: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON of a dict that :func:`event_to_json_dict` made (for callers that keep one).

    Compact, not ASCII-escaped, keys in dict order. orjson writes the strings, integers, nulls and
    dicts of an event byte for byte as ``json.dumps(ensure_ascii=False, separators=(",", ":"))``;
    what it refuses (keys that are not strings, integers past 64 bits, lone surrogates, datetimes,
    subclasses of the JSON types) goes to the standard library, which writes it or fails as before.
    """
    try:
        return orjson.dumps(json_dict, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        pass
    try:
        return json.dumps(json_dict, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise CodecError(f"event cannot be written as JSON: {exc}") from exc


def json_dict_to_event(obj: Mapping[str, Any]) -> VmStatusEvent:
    """The inverse of :func:`event_to_json_dict`, checked against the schema."""
    event: dict[str, Any] = {}
    for name in FIELD_NAMES:
        if name in obj:
            value = obj[name]
        elif name in _DEFAULTS:
            # A field added after the writer's version: its default, as Avro schema resolution does.
            default = _DEFAULTS[name]
            value = dict(default) if isinstance(default, dict) else default
        else:
            raise CodecError(f"JSON event has no {name}")
        if name in _TIMESTAMP_FIELDS and value is not None:
            if not isinstance(value, str):
                raise CodecError(f"{name} must be an ISO 8601 string, not {type(value).__name__}")
            try:
                value = datetime.fromisoformat(value)
            except ValueError as exc:
                raise CodecError(f"{name} is not an ISO 8601 timestamp: {value[:64]!r}") from exc
            try:
                value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
            except (OverflowError, ValueError) as exc:
                raise CodecError(f"{name} is out of range: {exc}") from exc
        elif name == "progress" and value == "":
            value = None
        elif name in _RECORD_DEFAULTS and isinstance(value, dict):
            value = {key: value.get(key, default) for key, default in _RECORD_DEFAULTS[name].items()}
        event[name] = value
    try:
        validate(event, PARSED_SCHEMA, raise_errors=True)
    except ValidationError as exc:
        raise CodecError(f"JSON event does not fit the schema: {exc}") from exc
    except (ValueError, TypeError, OverflowError) as exc:
        raise CodecError(f"JSON event does not fit the schema: {exc}") from exc
    try:
        # JSON can spell a lone surrogate ("\\udXXX"), which no format can write back.
        json.dumps(obj, ensure_ascii=False, default=str).encode()
    except UnicodeEncodeError as exc:
        raise CodecError(f"JSON event holds text that is not valid Unicode: {exc}") from exc
    return cast(VmStatusEvent, event)


def decode_json(data: bytes | str) -> VmStatusEvent:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        # UnicodeDecodeError is a ValueError too.
        raise CodecError(f"not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise CodecError(f"a JSON event must be an object, not {type(obj).__name__}")
    return json_dict_to_event(obj)


# --- Confluent Schema Registry ------------------------------------------------------------------


def subject_for(topic: str) -> str:
    """The subject of a topic's record values: Confluent's TopicNameStrategy, ``<topic>-value``."""
    return f"{topic}-value"


def encode_confluent(event: Mapping[str, Any], schema_id: int) -> bytes:
    """The Confluent wire format: ``00``, the schema id (4 bytes, big-endian), the Avro body.

    The same bytes as confluent-kafka's AvroSerializer writes (its body is fastavro's too); framed
    here so that writing a record never waits on the registry: the id comes from the registration
    done at start-up (:class:`ConfluentCodec`).
    """
    return frame_confluent(avro_body(event), schema_id)


def frame_confluent(body: bytes, schema_id: int) -> bytes:
    """An Avro body in the Confluent wire format (for callers that frame one body for several topics)."""
    if not 0 <= schema_id < 2**31:
        raise CodecError(f"schema id {schema_id} does not fit the Confluent wire format")
    return CONFLUENT_MAGIC + schema_id.to_bytes(4, "big") + body


class RegistrationError(CodecError):
    """The registry did not register the event schema under a subject: unreachable, or refused."""


class ConfluentCodec:
    """A Confluent-compatible Schema Registry, through confluent-kafka's own client.

    ``registry`` is a Schema Registry URL (``mock://...`` gives confluent-kafka's in-memory registry)
    or a ready client. :meth:`register` registers the event schema under a topic's subject and
    returns its id (the client caches it: one HTTP call per topic); :meth:`decode` reads the
    Confluent wire format with confluent-kafka's AvroDeserializer, whatever the subject.
    """

    def __init__(self, registry: str | SchemaRegistryClient) -> None:
        # Imported here: processes that never use a registry do not pay for confluent-kafka's client.
        try:
            from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
            from confluent_kafka.schema_registry.avro import AvroDeserializer
            from confluent_kafka.serialization import MessageField, SerializationContext
        except ImportError as exc:
            raise CodecError(
                "the Confluent format needs confluent-kafka's schema registry extra "
                f"(confluent-kafka[schemaregistry]): {exc}"
            ) from exc

        if isinstance(registry, str):
            self.url = registry
            # The client's own retries, with jittered exponential backoff, cover a blip; the
            # caller's retries (streams.registration) cover a registry that is down for longer.
            self.client = SchemaRegistryClient.new_client(
                {"url": registry, "timeout": 10, "max.retries": 2, "retries.wait.ms": 500}
            )
        else:
            self.url = "(client)"
            self.client = registry
        self._schema = Schema(SCHEMA_JSON, "AVRO")
        self._deserializer = AvroDeserializer(self.client)
        self._context = SerializationContext(DEFAULT_TOPIC, MessageField.VALUE)

    def register(self, topic: str) -> int:
        """The id of the event schema under ``<topic>-value``, registering it if need be."""
        subject = subject_for(topic)
        try:
            return int(self.client.register_schema(subject, self._schema))
        except Exception as exc:
            # SchemaRegistryError for a refusal (incompatible, invalid, unauthorised); the HTTP
            # library's own errors for a registry that cannot be reached.
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise RegistrationError(
                f"schema registry {self.url}: cannot register subject {subject}: "
                f"{type(exc).__name__}: {detail}"
            ) from exc

    def encode(self, event: Mapping[str, Any], topic: str = DEFAULT_TOPIC) -> bytes:
        return encode_confluent(event, self.register(topic))

    def decode(self, data: bytes) -> VmStatusEvent:
        from confluent_kafka.error import KafkaException
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        if len(data) < 6 or data[:1] != CONFLUENT_MAGIC:
            raise CodecError("not the Confluent wire format: it must start with 00 and a 4-byte schema id")
        schema_id = int.from_bytes(data[1:5], "big")
        try:
            record = self._deserializer(bytes(data), self._context)
        except SchemaRegistryError as exc:
            raise CodecError(f"schema id {schema_id}: {exc}") from exc
        except (KafkaException, EOFError, StopIteration, ValueError, TypeError, IndexError, KeyError) as exc:
            raise CodecError(f"schema id {schema_id}: truncated or corrupt Avro body: {exc}") from exc
        if not isinstance(record, dict):
            raise CodecError(f"schema id {schema_id} is not a record schema")
        return cast(VmStatusEvent, record)


# --- one entry point for every format -----------------------------------------------------------


def detect(data: bytes) -> str:
    """The format of an encoded event, from its first bytes."""
    if data[:2] == SINGLE_OBJECT_MAGIC:
        return AVRO
    if data[:1] == CONFLUENT_MAGIC:
        return CONFLUENT
    if data.lstrip(b" \t\r\n").removeprefix(b"\xef\xbb\xbf")[:1] == b"{":
        return JSON
    raise CodecError(
        f"unrecognised format (first bytes {bytes(data[:4]).hex(' ') or 'none'}): expected C3 01 (Avro), "
        "00 (Confluent) or { (JSON)"
    )


def _not_confluent(data: bytes) -> str:
    """Why a record is not in the Confluent wire format, and what it looks like instead."""
    text = "the framing is not Confluent's (00 and a 4-byte schema id)"
    try:
        found = detect(data)
    except CodecError:
        return f"{text}: first bytes {bytes(data[:4]).hex(' ') or 'none'}"
    if found == AVRO:
        return f"{text}: it starts with C3 01, Avro single-object encoding; try --format avro"
    if found == JSON:
        return f"{text}: it is JSON; try --format json, or --format raw for a raw-topic record"
    return f"{text}: it is too short ({len(data)} bytes)"


def encode(event: Mapping[str, Any], fmt: str = AVRO, *, confluent: ConfluentCodec | None = None) -> bytes:
    if fmt == AVRO:
        return encode_avro(event)
    if fmt == JSON:
        return encode_json(event)
    if fmt == CONFLUENT:
        if confluent is None:
            raise CodecError("the Confluent format needs a schema registry")
        return confluent.encode(event)
    raise CodecError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def decode(data: bytes, fmt: str = AUTO, *, confluent: ConfluentCodec | None = None) -> VmStatusEvent:
    if fmt == AUTO:
        fmt = detect(data)
    if fmt == AVRO:
        return decode_avro(data)
    if fmt == JSON:
        return decode_json(data)
    if fmt == CONFLUENT:
        if len(data) < 6 or data[:1] != CONFLUENT_MAGIC:
            # Said before asking for a registry: no registry decodes a record framed otherwise.
            raise CodecError(_not_confluent(data))
        if confluent is None:
            schema_id = int.from_bytes(data[1:5], "big") if len(data) >= 5 else None
            raise CodecError(
                f"Confluent wire format (schema id {schema_id}) needs a schema registry URL to decode"
            )
        return confluent.decode(data)
    raise CodecError(f"unknown format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
