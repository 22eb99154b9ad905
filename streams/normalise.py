"""Nova notification (legacy or versioned) -> one VM status event, the dict the schema describes.

Pure functions: no I/O, no clock, no logging on the hot path. :func:`normalise` returns None for
notifications that are not instance status events (``compute.metrics.update``,
``scheduler.select_destinations.end``, ``aggregate.*``, ...) and raises
:class:`MalformedNotification` for instance events it cannot turn into a valid event. Nothing
else escapes it, whatever the input, and every event it returns fits the schema and encodes in
every wire format; the property tests hold it to both.

The returned event may share the ``metadata`` and ``image_meta`` mappings of the input instead of
copying them: callers pass a freshly decoded record that nobody else holds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, NoReturn, TypedDict, cast

import orjson

from schemas.raw import POLLED_EVENT_TYPE
from schemas.vocabulary import (
    CATALOGUE,
    FORMAT_LEGACY,
    FORMAT_POLL,
    PHASE_ERROR,
    Classification,
    polled_classification,
)


class Fault(TypedDict):
    exception: str | None
    message: str | None
    code: int | None
    module_name: str | None
    function_name: str | None


class VmStatusEvent(TypedDict):
    """One event, keyed by the Avro field names of schemas/vm_status_event.avsc."""

    state_description: str
    availability_zone: str | None
    terminated_at: str | None
    ephemeral_gb: int | None
    instance_type_id: int | None
    deleted_at: str | None
    reservation_id: str | None
    memory_mb: int | None
    display_name: str | None
    hostname: str | None
    state: str
    progress: int | None
    launched_at: str | None
    metadata: Mapping[str, str]
    node: str | None
    ramdisk_id: str | None
    access_ip_v6: str | None
    disk_gb: int | None
    access_ip_v4: str | None
    kernel_id: str | None
    host: str | None
    user_id: str | None
    image_ref_url: str | None
    cell_name: str | None
    root_gb: int | None
    tenant_id: str | None
    created_at: str | None
    instance_id: str
    instance_type: str | None
    vcpus: int | None
    image_meta: Mapping[str, str]
    architecture: str | None
    os_type: str | None
    instance_flavor_id: str | None
    status: str
    phase: str
    vim_id: str
    event_type: str
    format: str
    message_id: str | None
    publisher_id: str
    priority: str
    occurred_at: datetime
    received_at: datetime
    updated_at: datetime | None
    power_state: str | None
    task_state: str | None
    fault: Fault | None


# Reasons, short and stable: they become metric labels and dead-letter headers.
NOT_AN_OBJECT: Final = "not_an_object"
MISSING_EVENT_TYPE: Final = "missing_event_type"
MISSING_PAYLOAD: Final = "missing_payload"
MISSING_VIM_ID: Final = "missing_vim_id"
MISSING_INSTANCE_ID: Final = "missing_instance_id"
MISSING_STATE: Final = "missing_state"
MISSING_PUBLISHER_ID: Final = "missing_publisher_id"
MISSING_TIMESTAMP: Final = "missing_timestamp"
MISSING_NOVA_OBJECT_DATA: Final = "missing_nova_object_data"
BAD_FIELD_TYPE: Final = "bad_field_type"
BAD_TIMESTAMP: Final = "bad_timestamp"
BAD_PAYLOAD_VERSION: Final = "bad_payload_version"
UNSUPPORTED_PAYLOAD_VERSION: Final = "unsupported_payload_version"
BAD_TEXT: Final = "bad_text"
BAD_OSLO_ENVELOPE: Final = "bad_oslo_envelope"

REASONS: Final = frozenset(
    {
        NOT_AN_OBJECT,
        MISSING_EVENT_TYPE,
        MISSING_PAYLOAD,
        MISSING_VIM_ID,
        MISSING_INSTANCE_ID,
        MISSING_STATE,
        MISSING_PUBLISHER_ID,
        MISSING_TIMESTAMP,
        MISSING_NOVA_OBJECT_DATA,
        BAD_FIELD_TYPE,
        BAD_TIMESTAMP,
        BAD_TEXT,
        BAD_PAYLOAD_VERSION,
        UNSUPPORTED_PAYLOAD_VERSION,
        BAD_OSLO_ENVELOPE,
    }
)


class MalformedNotification(ValueError):
    """An instance notification that cannot become an event; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


def _fail(reason: str, message: str, field: str | None = None) -> NoReturn:
    raise MalformedNotification(reason, message, field=field)


def _bad_type(field: str, value: object, expected: str) -> NoReturn:
    _fail(BAD_FIELD_TYPE, f"{field} must be {expected}, not {type(value).__name__}", field)


# Nova's database columns are 32-bit; the schema says "int", so out-of-range values are rejected here
# rather than by the encoder.
_INT_MIN: Final = -(2**31)
_INT_MAX: Final = 2**31 - 1


def _as_str(value: object, field: str) -> str | None:
    """Slow path of the string fields: numbers become text (some ids are numeric), the rest fails.

    The fast path accepts ASCII strings only, so every other string passes here to be checked for
    lone surrogates: JSON can carry them ("\\udXXX") but no wire format can.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = str(value)
        try:
            text.encode()
        except UnicodeEncodeError:
            _fail(BAD_TEXT, f"{field} is not valid Unicode text (a lone surrogate)", field)
        return text
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    _bad_type(field, value, "a string or null")


def _as_int(value: object, field: str) -> int | None:
    if type(value) is int:
        number = value
    elif value is None or value == "":
        # Nova's legacy convention for "no value" is "" (progress, for one).
        return None
    elif isinstance(value, bool):
        _bad_type(field, value, "an integer")
    elif isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            _bad_type(field, value, "an integer or null")
    else:
        _bad_type(field, value, "an integer or null")
    if not _INT_MIN <= number <= _INT_MAX:
        _fail(BAD_FIELD_TYPE, f"{field} is out of the 32-bit integer range: {number}", field)
    return number


def _as_string_map(value: object, field: str) -> Mapping[str, str]:
    if type(value) is dict:
        # join() checks in C that every key and value is a string; isascii() that all are encodable.
        try:
            if "".join(value).isascii() and "".join(value.values()).isascii():
                return value
        except TypeError:
            pass
    elif value is None:
        return {}
    elif isinstance(value, list) and not value:
        # Some producers send an empty metadata list instead of an empty object.
        return {}
    elif not isinstance(value, Mapping):
        _bad_type(field, value, "an object of strings")
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            _bad_type(f"{field} key", key, "a string")
        key = cast(str, _as_str(key, f"{field} key"))
        if isinstance(item, str):
            result[key] = cast(str, _as_str(item, f"{field}.{key}"))
        elif item is None:
            result[key] = ""
        elif isinstance(item, bool | int | float):
            # str(), not JSON: Nova itself stores image properties as str(value) ("True").
            result[key] = str(item)
        else:
            _bad_type(f"{field}.{key}", item, "a string")
    return result


def _as_mapping(value: object, field: str) -> Mapping[str, Any]:
    if type(value) is dict or isinstance(value, Mapping):
        return value
    _bad_type(field, value, "an object")


def parse_timestamp(value: object, field: str) -> datetime:
    """A Nova or ISO 8601 timestamp as an aware UTC datetime; no zone means UTC (Nova's utcnow())."""
    if type(value) is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            _fail(BAD_TIMESTAMP, f"{field} is not an ISO 8601 timestamp: {value[:64]!r}", field)
        if parsed.tzinfo is None:
            # Parsing again with a zone costs a fifth of datetime.replace(tzinfo=...). A date alone
            # does not take the zone, hence the check.
            try:
                zoned = datetime.fromisoformat(value + "+00:00")
            except ValueError:
                return parsed.replace(tzinfo=UTC)
            return zoned if zoned.tzinfo is UTC else parsed.replace(tzinfo=UTC)
    elif isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        return parse_timestamp(str(value), field)
    else:
        _bad_type(field, value, "a timestamp string")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    if parsed.tzinfo is UTC:
        return parsed
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        _fail(BAD_TIMESTAMP, f"{field} is out of range once converted to UTC: {value!s:.64}", field)


def _optional_timestamp(value: object, field: str) -> datetime | None:
    return None if value is None or value == "" else parse_timestamp(value, field)


# The shapes Nova and the listener write (str(utcnow()), isoformat() of an aware UTC time, the
# versioned "...Z"): UTC with whole seconds or microseconds, ASCII digits.
_UTC_TEXT: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{6})?(?:Z|\+00:00)?"
)


def json_timestamp_text(value: object) -> str | None:
    """The JSON text (``YYYY-MM-DDTHH:MM:SS.ffffffZ``) of a timestamp string that
    :func:`parse_timestamp` accepted, cut out of the string itself when it has one of the usual
    UTC shapes, else None.

    Formatting the datetime again costs about twice this match, and the stream worker needs the
    text of two or three timestamps of every event.
    """
    if type(value) is not str or _UTC_TEXT.fullmatch(value) is None:
        return None
    fraction = value[19:26] if len(value) > 19 and value[19] == "." else ".000000"
    return f"{value[:10]}T{value[11:19]}{fraction}Z"


# orjson reads integers only within [-2**63, 2**64 - 1] and silently makes a float of any other;
# a literal that long has at least 19 digits in a row.
_DIGITS_ONLY: Final = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGIT_RUN: Final = b"0" * 19


def load_record(data: bytes | bytearray | str) -> Any:
    """``json.loads(data)``, with the same result and the same exceptions, through orjson when it can.

    orjson refuses what it does not read the way the standard library does (NaN and Infinity,
    lone surrogates, byte order marks, UTF-16, nesting past 1024) and the standard library then
    decides, so a malformed record fails exactly as before.
    """
    if type(data) is bytes and _LONG_DIGIT_RUN not in data.translate(_DIGITS_ONLY):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def _required_str(container: Mapping[str, Any], key: str, reason: str, field: str) -> str:
    value = container.get(key)
    if type(value) is str and value and value.isascii():
        return value
    if value is None or value == "":
        _fail(reason, f"{field} is missing", field)
    if isinstance(value, str):
        return cast(str, _as_str(value, field))
    _bad_type(field, value, "a string")


_LEGACY_STRINGS: Final = (
    "availability_zone",
    "terminated_at",
    "deleted_at",
    "reservation_id",
    "display_name",
    "hostname",
    "launched_at",
    "node",
    "ramdisk_id",
    "access_ip_v6",
    "access_ip_v4",
    "kernel_id",
    "host",
    "user_id",
    "image_ref_url",
    "cell_name",
    "tenant_id",
    "created_at",
    "instance_type",
    "architecture",
    "os_type",
    "instance_flavor_id",
)
_LEGACY_INTS: Final = (
    "ephemeral_gb",
    "instance_type_id",
    "memory_mb",
    "disk_gb",
    "root_gb",
    "vcpus",
    "progress",
)
_STR_OR_NONE: Final = frozenset({str, type(None)})


def _all_ascii_or_none(values: tuple[object, ...]) -> bool:
    """Whether every value takes the string fields' fast path (None or an ASCII str), checked in C:
    one field at a time, the checks cost more than the rest of the record's string handling."""
    if not _STR_OR_NONE.issuperset(map(type, values)):
        return False
    return "".join(cast("Iterable[str]", filter(None, values))).isascii()


# (event field, versioned InstancePayload field)
_VERSIONED_STRINGS: Final = (
    ("availability_zone", "availability_zone"),
    ("terminated_at", "terminated_at"),
    ("deleted_at", "deleted_at"),
    ("reservation_id", "reservation_id"),
    ("display_name", "display_name"),
    ("hostname", "host_name"),
    ("launched_at", "launched_at"),
    ("node", "node"),
    ("ramdisk_id", "ramdisk_id"),
    ("kernel_id", "kernel_id"),
    ("host", "host"),
    ("user_id", "user_id"),
    # Nova itself puts the bare image id in legacy image_ref_url when it cannot build a Glance URL.
    ("image_ref_url", "image_uuid"),
    ("tenant_id", "tenant_id"),
    ("created_at", "created_at"),
    ("architecture", "architecture"),
    ("os_type", "os_type"),
    ("power_state", "power_state"),
)
_VERSIONED_NAMES: Final = tuple(name for name, _ in _VERSIONED_STRINGS)
_VERSIONED_SOURCES: Final = tuple(source for _, source in _VERSIONED_STRINGS)
# (event field, FlavorPayload field)
_FLAVOR_STRINGS: Final = (("instance_type", "name"), ("instance_flavor_id", "flavorid"))
_FLAVOR_INTS: Final = ("memory_mb", "vcpus", "root_gb", "ephemeral_gb")

# A major version may remove or change fields. InstanceUpdatePayload and InstanceExistsPayload are
# at 2.x because 2.0 removed ``bandwidth``, a field the schema never used; every other instance
# payload is 1.x.
_DEFAULT_MAJORS: Final = frozenset({"1"})
_SUPPORTED_MAJORS: Final = {
    "InstanceUpdatePayload": frozenset({"1", "2"}),
    "InstanceExistsPayload": frozenset({"1", "2"}),
}


# (nova_object.name, nova_object.version) pairs that passed: a few per Nova release, met on every
# versioned notification. Bounded all the same, as the names and versions come from the wire.
_ACCEPTED_VERSIONS: Final[set[tuple[str, str]]] = set()
_MAX_ACCEPTED_VERSIONS: Final = 256


def _check_version(nova_object: Mapping[str, Any], field: str) -> None:
    version = nova_object.get("nova_object.version")
    name = nova_object.get("nova_object.name")
    if type(version) is str and type(name) is str and (name, version) in _ACCEPTED_VERSIONS:
        return
    if type(version) is not str:
        if version is None:
            _fail(BAD_PAYLOAD_VERSION, f"{field} has no nova_object.version", field)
        _bad_type(f"{field} nova_object.version", version, "a string")
    major, dot, minor = version.partition(".")
    if not (dot and major.isascii() and major.isdigit() and minor.isascii() and minor.isdigit()):
        _fail(BAD_PAYLOAD_VERSION, f"{field} nova_object.version is not MAJOR.MINOR: {version[:32]!r}", field)
    supported = _SUPPORTED_MAJORS.get(name, _DEFAULT_MAJORS) if type(name) is str else _DEFAULT_MAJORS
    if major.lstrip("0") not in supported:
        _fail(
            UNSUPPORTED_PAYLOAD_VERSION,
            f"{field} {name} version {version} is not supported (major {'/'.join(sorted(supported))})",
            field,
        )
    if type(name) is str and len(_ACCEPTED_VERSIONS) < _MAX_ACCEPTED_VERSIONS:
        _ACCEPTED_VERSIONS.add((name, version))


def _object_data(value: object, field: str) -> Mapping[str, Any]:
    """``nova_object.data`` of a nested versioned object, after checking its major version."""
    nova_object = _as_mapping(value, field)
    data = nova_object.get("nova_object.data")
    if data is None:
        _fail(MISSING_NOVA_OBJECT_DATA, f"{field} has no nova_object.data", field)
    _check_version(nova_object, field)
    return data if type(data) is dict else _as_mapping(data, f"{field} nova_object.data")


def _first_addresses(value: object) -> tuple[str | None, str | None]:
    """First IPv4 and first IPv6 address of a versioned ip_addresses list."""
    if value is None:
        return None, None
    if not isinstance(value, list):
        _bad_type("ip_addresses", value, "a list")
    v4: str | None = None
    v6: str | None = None
    for item in value:
        ip = _object_data(item, "ip_addresses[]")
        address = _as_str(ip.get("address"), "ip_addresses[].address")
        if not address:
            continue
        version = ip.get("version")
        is_v6 = version == 6 if version in (4, 6) else ":" in address
        if is_v6:
            v6 = v6 or address
        else:
            v4 = v4 or address
        if v4 and v6:
            break
    return v4, v6


def _versioned_fault(value: object) -> Fault | None:
    if value is None:
        return None
    data = _object_data(value, "fault")
    return {
        "exception": _as_str(data.get("exception"), "fault.exception"),
        "message": _as_str(data.get("exception_message"), "fault.exception_message"),
        "code": None,
        "module_name": _as_str(data.get("module_name"), "fault.module_name"),
        "function_name": _as_str(data.get("function_name"), "fault.function_name"),
    }


def _legacy_fault(payload: Mapping[str, Any], phase: str) -> Fault | None:
    # compute_utils.exception_to_dict() adds exception, message and code to an error payload.
    if (
        "exception" not in payload
        and "code" not in payload
        and not (phase == PHASE_ERROR and "message" in payload)
    ):
        return None
    exception = payload.get("exception")
    return {
        # The legacy exception is the serialised exception object, not its class name.
        "exception": _as_str(exception, "exception") if isinstance(exception, str) else None,
        "message": _as_str(payload.get("message"), "message"),
        "code": _as_int(payload.get("code"), "code"),
        "module_name": None,
        "function_name": None,
    }


def _copy_strings(
    event: dict[str, Any], names: tuple[str, ...], sources: tuple[str, ...], values: tuple[Any, ...]
) -> None:
    """Set the string fields `names` from `values` (read from the payload's `sources`): in one
    update when every value is ASCII text or null, the common case, else one by one, checked."""
    if _all_ascii_or_none(values):
        event.update(zip(names, values, strict=True))
        return
    for name, source, value in zip(names, sources, values, strict=True):
        event[name] = (
            value if value is None or (type(value) is str and value.isascii()) else _as_str(value, source)
        )


def _legacy_fields(payload: Mapping[str, Any], event: dict[str, Any], phase: str) -> None:
    # Identity first: without an instance there is no event, whatever else is wrong.
    event["instance_id"] = _required_str(payload, "instance_id", MISSING_INSTANCE_ID, "instance_id")
    event["state"] = _required_str(payload, "state", MISSING_STATE, "state")
    get = payload.get
    _copy_strings(event, _LEGACY_STRINGS, _LEGACY_STRINGS, tuple(map(get, _LEGACY_STRINGS)))
    for name in _LEGACY_INTS:
        value = get(name)
        event[name] = value if type(value) is int and _INT_MIN <= value <= _INT_MAX else _as_int(value, name)
    task_state = get("state_description")
    if task_state is None:
        task_state = ""
    elif type(task_state) is not str or not task_state.isascii():
        task_state = _as_str(task_state, "state_description")
    event["state_description"] = task_state
    event["task_state"] = task_state or None
    event["metadata"] = _as_string_map(get("metadata"), "metadata")
    event["image_meta"] = _as_string_map(get("image_meta"), "image_meta")
    event["power_state"] = None
    event["updated_at"] = None
    event["fault"] = _legacy_fault(payload, phase)


def _versioned_fields(payload: Mapping[str, Any], event: dict[str, Any]) -> None:
    data = payload.get("nova_object.data")
    if data is None:
        _fail(MISSING_NOVA_OBJECT_DATA, "versioned payload has no nova_object.data", "payload")
    if type(data) is not dict and not isinstance(data, Mapping):
        _bad_type("nova_object.data", data, "an object")
    _check_version(payload, "payload")
    event["instance_id"] = _required_str(data, "uuid", MISSING_INSTANCE_ID, "uuid")
    event["state"] = _required_str(data, "state", MISSING_STATE, "state")
    get = data.get
    _copy_strings(event, _VERSIONED_NAMES, _VERSIONED_SOURCES, tuple(map(get, _VERSIONED_SOURCES)))
    task_state = get("task_state")
    if task_state is not None and (type(task_state) is not str or not task_state.isascii()):
        task_state = _as_str(task_state, "task_state")
    event["task_state"] = task_state or None
    event["state_description"] = task_state or ""
    progress = get("progress")
    event["progress"] = (
        progress if type(progress) is int and 0 <= progress <= 100 else _as_int(progress, "progress")
    )
    event["metadata"] = _as_string_map(get("metadata"), "metadata")
    event["image_meta"] = {}
    event["cell_name"] = None
    event["instance_type_id"] = None

    flavor_object = get("flavor")
    if flavor_object is None:
        for name, _source in _FLAVOR_STRINGS:
            event[name] = None
        for name in _FLAVOR_INTS:
            event[name] = None
        event["disk_gb"] = None
    else:
        flavor = _object_data(flavor_object, "flavor")
        for name, source in _FLAVOR_STRINGS:
            value = flavor.get(source)
            event[name] = (
                value
                if value is None or (type(value) is str and value.isascii())
                else _as_str(value, f"flavor.{source}")
            )
        for name in _FLAVOR_INTS:
            value = flavor.get(name)
            event[name] = (
                value
                if type(value) is int and _INT_MIN <= value <= _INT_MAX
                else _as_int(value, f"flavor.{name}")
            )
        root_gb, ephemeral_gb = event["root_gb"], event["ephemeral_gb"]
        # Legacy disk_gb is root_gb + ephemeral_gb (nova/notifications/base.py).
        event["disk_gb"] = (
            _as_int(root_gb + ephemeral_gb, "disk_gb")
            if root_gb is not None and ephemeral_gb is not None
            else None
        )

    event["access_ip_v4"], event["access_ip_v6"] = _first_addresses(get("ip_addresses"))
    event["fault"] = _versioned_fault(get("fault"))
    event["updated_at"] = _optional_timestamp(get("updated_at"), "updated_at")


# (event field, server field of GET /servers/detail); the OS-EXT-* fields need an admin's view.
_SERVER_STRINGS: Final = (
    ("availability_zone", "OS-EXT-AZ:availability_zone"),
    ("terminated_at", "OS-SRV-USG:terminated_at"),
    ("reservation_id", "OS-EXT-SRV-ATTR:reservation_id"),
    ("display_name", "name"),
    ("hostname", "OS-EXT-SRV-ATTR:hostname"),
    ("launched_at", "OS-SRV-USG:launched_at"),
    ("node", "OS-EXT-SRV-ATTR:hypervisor_hostname"),
    ("ramdisk_id", "OS-EXT-SRV-ATTR:ramdisk_id"),
    ("kernel_id", "OS-EXT-SRV-ATTR:kernel_id"),
    ("host", "OS-EXT-SRV-ATTR:host"),
    ("user_id", "user_id"),
    ("tenant_id", "tenant_id"),
    ("created_at", "created"),
    ("access_ip_v4", "accessIPv4"),
    ("access_ip_v6", "accessIPv6"),
)
_SERVER_NAMES: Final = tuple(name for name, _ in _SERVER_STRINGS)
_SERVER_SOURCES: Final = tuple(source for _, source in _SERVER_STRINGS)
# nova/compute/power_state.py: the API shows the number.
_POWER_STATES: Final = {0: "pending", 1: "running", 3: "paused", 4: "shutdown", 6: "crashed", 7: "suspended"}


def _polled_fields(payload: Mapping[str, Any], event: dict[str, Any]) -> None:
    """A server of Nova's API (`eventfed poll`): its vm_state, task_state, host, tenant and times."""
    event["instance_id"] = _required_str(payload, "id", MISSING_INSTANCE_ID, "id")
    event["state"] = _required_str(payload, "OS-EXT-STS:vm_state", MISSING_STATE, "OS-EXT-STS:vm_state")
    get = payload.get
    task_state = _as_str(get("OS-EXT-STS:task_state"), "OS-EXT-STS:task_state")
    event["task_state"] = task_state or None
    event["state_description"] = task_state or ""
    found = polled_classification(event["state"], event["task_state"])
    event["status"], event["phase"], event["format"] = found.kind, found.phase, found.format
    _copy_strings(event, _SERVER_NAMES, _SERVER_SOURCES, tuple(map(get, _SERVER_SOURCES)))
    if event["access_ip_v4"] == "":
        event["access_ip_v4"] = None
    if event["access_ip_v6"] == "":
        event["access_ip_v6"] = None
    power = get("OS-EXT-STS:power_state")
    event["power_state"] = _POWER_STATES.get(power) if type(power) is int else None
    event["progress"] = _as_int(get("progress"), "progress")
    event["metadata"] = _as_string_map(get("metadata"), "metadata")
    event["image_meta"] = {}
    event["cell_name"] = None
    event["instance_type_id"] = None
    event["deleted_at"] = None
    event["os_type"] = None
    event["architecture"] = None
    image = get("image")
    event["image_ref_url"] = _as_str(image.get("id"), "image.id") if isinstance(image, Mapping) else None
    flavor = get("flavor")
    flavor = _as_mapping(flavor, "flavor") if flavor is not None else {}
    # Before microversion 2.47 the flavor is its id only; from 2.47 its name and sizes.
    event["instance_flavor_id"] = _as_str(flavor.get("id"), "flavor.id")
    event["instance_type"] = _as_str(flavor.get("original_name"), "flavor.original_name")
    event["memory_mb"] = _as_int(flavor.get("ram"), "flavor.ram")
    event["vcpus"] = _as_int(flavor.get("vcpus"), "flavor.vcpus")
    event["root_gb"] = _as_int(flavor.get("disk"), "flavor.disk")
    event["ephemeral_gb"] = _as_int(flavor.get("ephemeral"), "flavor.ephemeral")
    root_gb, ephemeral_gb = event["root_gb"], event["ephemeral_gb"]
    event["disk_gb"] = (
        _as_int(root_gb + ephemeral_gb, "disk_gb")
        if root_gb is not None and ephemeral_gb is not None
        else None
    )
    fault = get("fault")
    if isinstance(fault, Mapping):
        event["fault"] = {
            "exception": None,
            "message": _as_str(fault.get("message"), "fault.message"),
            "code": _as_int(fault.get("code"), "fault.code"),
            "module_name": None,
            "function_name": None,
        }
    else:
        event["fault"] = None
    event["updated_at"] = _optional_timestamp(get("updated"), "updated")


def _time_from_payload(payload: Mapping[str, Any], event: dict[str, Any]) -> datetime | None:
    """When the envelope has no timestamp: the instance's updated_at, else the audit period's end."""
    updated_at: datetime | None = event["updated_at"]
    if updated_at is not None:
        return updated_at
    if event["format"] == FORMAT_LEGACY:
        return _optional_timestamp(payload.get("audit_period_ending"), "audit_period_ending")
    if event["format"] == FORMAT_POLL:
        return None
    audit_period = payload["nova_object.data"].get("audit_period")
    if audit_period is None:
        return None
    audit_end = _object_data(audit_period, "audit_period").get("audit_period_ending")
    return _optional_timestamp(audit_end, "audit_period_ending")


def _unwrap_oslo(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept the oslo.messaging 2.0 wire envelope too: the notification is a JSON string inside."""
    inner = raw["oslo.message"]
    if not isinstance(inner, str | bytes):
        _bad_type("oslo.message", inner, "a JSON string")
    try:
        message = json.loads(inner)
    except (ValueError, RecursionError):
        _fail(BAD_OSLO_ENVELOPE, "oslo.message is not valid JSON", "oslo.message")
    if not isinstance(message, dict):
        _fail(BAD_OSLO_ENVELOPE, "oslo.message is not a JSON object", "oslo.message")
    # What ingest added around the envelope (vim_id, received_at) still applies.
    for key in ("vim_id", "received_at"):
        if key in raw and key not in message:
            message[key] = raw[key]
    return message


class Normalised(NamedTuple):
    """An event, and the JSON text of each of its timestamps whose notification text had one of the
    usual UTC shapes (:func:`json_timestamp_text`): what `codecs.event_to_json_dict` needs to
    write the JSON form without formatting those datetimes again."""

    event: VmStatusEvent
    timestamp_texts: dict[str, str]


def normalise(
    raw: Mapping[str, Any], *, vim_id: str | None = None, received_at: datetime | None = None
) -> VmStatusEvent | None:
    """Turn one raw record or Nova notification into a VM status event.

    ``vim_id`` and ``received_at`` are used when the record does not carry its own. Returns None
    when the notification is not an instance status event; raises MalformedNotification when it
    is one but cannot be made into a valid event.
    """
    normalised = normalise_with_texts(raw, vim_id=vim_id, received_at=received_at)
    return None if normalised is None else normalised.event


def normalise_with_texts(
    raw: Mapping[str, Any], *, vim_id: str | None = None, received_at: datetime | None = None
) -> Normalised | None:
    """`normalise`, with the JSON texts of the event's timestamps (see `Normalised`)."""
    if type(raw) is not dict and not isinstance(raw, Mapping):
        _fail(NOT_AN_OBJECT, f"a notification must be a JSON object, not {type(raw).__name__}")
    if "oslo.message" in raw:
        raw = _unwrap_oslo(raw)
    event_type = _event_type_of(raw)
    found: Classification | None = CATALOGUE.get(event_type)
    if found is None and event_type != POLLED_EVENT_TYPE:
        return None
    payload = raw.get("payload")
    if payload is None:
        _fail(MISSING_PAYLOAD, f"{event_type} has no payload", "payload")
    if type(payload) is not dict and not isinstance(payload, Mapping):
        _bad_type("payload", payload, "an object")
    event = _payload_fields(found, payload, _vim_of(raw, vim_id), event_type)
    _envelope_fields(raw, event)
    texts = _times(raw, payload, event, received_at)
    return Normalised(cast(VmStatusEvent, event), texts)


def _event_type_of(raw: Mapping[str, Any]) -> str:
    event_type = raw.get("event_type")
    if type(event_type) is str:
        return event_type
    if event_type is None:
        _fail(MISSING_EVENT_TYPE, "event_type is missing", "event_type")
    if not isinstance(event_type, str):
        _bad_type("event_type", event_type, "a string")
    return str(event_type)


def _vim_of(raw: Mapping[str, Any], vim_id: str | None) -> str:
    """The record's own VIM id, else the one the caller gives."""
    vim = raw.get("vim_id")
    if vim is None or vim == "":
        vim = vim_id
    if type(vim) is str and vim and vim.isascii():
        return vim
    if vim is None or vim == "":
        _fail(MISSING_VIM_ID, "no vim_id in the record and none given", "vim_id")
    if not isinstance(vim, str):
        _bad_type("vim_id", vim, "a string")
    return cast(str, _as_str(vim, "vim_id"))


def _payload_fields(
    found: Classification | None, payload: Mapping[str, Any], vim: str, event_type: str
) -> dict[str, Any]:
    """The event's fields from its payload, by its format."""
    if found is None:
        # A polled server snapshot: its status and phase come from its states.
        event: dict[str, Any] = {"vim_id": vim, "event_type": event_type}
        _polled_fields(payload, event)
        return event
    event = {
        "status": found.kind,
        "phase": found.phase,
        "vim_id": vim,
        "event_type": event_type,
        "format": found.format,
    }
    if found.format == FORMAT_LEGACY:
        _legacy_fields(payload, event, found.phase)
    else:
        _versioned_fields(payload, event)
    return event


def _envelope_fields(raw: Mapping[str, Any], event: dict[str, Any]) -> None:
    """publisher_id, message_id and priority, from the notification's envelope."""
    event["publisher_id"] = _required_str(raw, "publisher_id", MISSING_PUBLISHER_ID, "publisher_id")
    message_id = raw.get("message_id")
    if message_id is not None and (type(message_id) is not str or not message_id.isascii()):
        message_id = _as_str(message_id, "message_id")
    event["message_id"] = message_id or None
    priority = raw.get("priority")
    if type(priority) is str and priority and priority.isascii():
        event["priority"] = priority if priority.isupper() else priority.upper()
    elif priority is None or priority == "":
        # oslo.messaging sends error notifications at ERROR; producers that drop the key lose that.
        event["priority"] = "ERROR" if event["phase"] == PHASE_ERROR else "INFO"
    else:
        event["priority"] = cast(str, _as_str(priority, "priority")).upper()


def _times(
    raw: Mapping[str, Any], payload: Mapping[str, Any], event: dict[str, Any], received_at: datetime | None
) -> dict[str, str]:
    """occurred_at and received_at into the event; the JSON texts of its timestamps returned."""
    record_received = raw.get("received_at")
    received = received_at if record_received is None else parse_timestamp(record_received, "received_at")
    if received is not None and (type(received) is not datetime or received.tzinfo is not UTC):
        received = parse_timestamp(received, "received_at")
    timestamp = raw.get("timestamp")
    occurred: datetime | None
    if timestamp is not None and timestamp != "":
        occurred = parse_timestamp(timestamp, "timestamp")
    else:
        occurred = _time_from_payload(payload, event) or received
    if occurred is None:
        _fail(MISSING_TIMESTAMP, "no timestamp in the notification and no received_at", "timestamp")
    event["occurred_at"] = occurred
    event["received_at"] = received or occurred
    texts: dict[str, str] = {}
    _timestamp_texts(texts, event, payload, record_received, timestamp)
    return texts


def _timestamp_texts(
    texts: dict[str, str],
    event: Mapping[str, Any],
    payload: Mapping[str, Any],
    record_received: object,
    timestamp: object,
) -> None:
    """Texts of the strings the event's timestamps were parsed from; called once all of them parsed."""
    occurred_text = json_timestamp_text(timestamp)
    if occurred_text is not None:
        texts["occurred_at"] = occurred_text
    if record_received is not None:
        received_text = json_timestamp_text(record_received)
        if received_text is not None:
            texts["received_at"] = received_text
    elif occurred_text is not None and event["received_at"] is event["occurred_at"]:
        # No received_at anywhere: the notification's own time stands for both.
        texts["received_at"] = occurred_text
    if event["updated_at"] is not None:
        data = payload["nova_object.data"] if event["format"] != FORMAT_POLL else payload
        updated_text = json_timestamp_text(
            data.get("updated" if event["format"] == FORMAT_POLL else "updated_at")
        )
        if updated_text is not None:
            texts["updated_at"] = updated_text
