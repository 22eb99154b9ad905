from __future__ import annotations

import io
import json
import struct
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import codecs
from streams.codecs import CodecError
from streams.normalise import normalise
from tests.unit import nova_samples
from tests.unit.nova_samples import RECEIVED_AT, TEMPLATES, VIM_ID
from tests.unit.streams.test_normalise import EVENT_FIELDS, SPEC_FIELDS

HYPOTHESIS = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Fields a v1 event must have. Any field added later has a default (schemas/README.md), so this set
# never grows: a reader on a newer schema can still read every old event.
REQUIRED_V1 = {
    "state",
    "instance_id",
    "status",
    "phase",
    "vim_id",
    "event_type",
    "format",
    "publisher_id",
    "priority",
    "occurred_at",
    "received_at",
}

# The ONAP spec's example message (a legacy power-off in progress), from onap/multicloud-framework
# docs/specs/multicloud_event_federation.rst, Copyright (c) 2017-2018 VMware, Inc., CC BY 4.0.
ONAP_SPEC_EXAMPLE: dict[str, Any] = {
    "state_description": "powering-off",
    "availability_zone": "nova",
    "terminated_at": "",
    "ephemeral_gb": 0,
    "instance_type_id": 5,
    "deleted_at": "",
    "reservation_id": "r-pvx3l6s2",
    "memory_mb": 2048,
    "display_name": "VM1",
    "hostname": "vm1",
    "state": "active",
    "progress": "",
    "launched_at": "2018-03-07T05:59:46.000000",
    "metadata": {},
    "node": "domain-c202.22bfc05c-da55-4ba6-ba93-08d9a067138e",
    "ramdisk_id": "",
    "access_ip_v6": None,
    "disk_gb": 20,
    "access_ip_v4": None,
    "kernel_id": "",
    "host": "compute01",
    "user_id": "aa90efa5c84c4084b39094da952e0bd1",
    "image_ref_url": "http://10.154.9.172:9292/images/207b9b7c-9450-4a95-852b-0d6d41f35d24",
    "cell_name": "",
    "root_gb": 20,
    "tenant_id": "943ecb804cdf4103976b8a02cea12fdb",
    "created_at": "2018-03-07 05:58:01+00:00",
    "instance_id": "4f398943-7d39-4119-8058-74768d6dfa52",
    "instance_type": "m1.small",
    "vcpus": 1,
    "image_meta": {
        "is_copying": "1",
        "container_format": "bare",
        "min_ram": "0",
        "vmware_disktype": "streamOptimized",
        "disk_format": "vmdk",
        "source_type": "url",
        "image_url": "https://cloud-images.ubuntu.com/releases/14.04/release/ubuntu-14.04-server-cloudimg-amd64-disk1.img",
        "vmware_adaptertype": "lsiLogic",
        "min_disk": "20",
        "base_image_ref": "207b9b7c-9450-4a95-852b-0d6d41f35d24",
    },
    "architecture": None,
    "os_type": None,
    "instance_flavor_id": "2",
}


def events() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in nova_samples.all_files():
        event = normalise(nova_samples.load(path), vim_id=VIM_ID, received_at=RECEIVED_AT)
        assert event is not None
        out.append((nova_samples.sample_id(path), dict(event)))
    return out


EVENTS = events()
EVENT_IDS = [name for name, _ in EVENTS]
ALL_EVENTS = [event for _, event in EVENTS]


def fastavro_body(event: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, codecs.PARSED_SCHEMA, event)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def confluent() -> codecs.ConfluentCodec:
    try:
        return codecs.ConfluentCodec("mock://eventfed-tests")
    except CodecError as exc:
        pytest.skip(f"confluent-kafka's schema registry client cannot be imported: {exc}")


# --- the schema ----------------------------------------------------------------------------------


def test_schema_has_every_spec_field_and_the_event_fields() -> None:
    assert codecs.SCHEMA["namespace"] == "org.onap.eventfed"
    assert codecs.SCHEMA["name"] == "VmStatusEvent"
    assert list(codecs.FIELD_NAMES) == SPEC_FIELDS + EVENT_FIELDS
    assert len(SPEC_FIELDS) == 34


def test_only_the_v1_fields_lack_a_default() -> None:
    without_default = {field["name"] for field in codecs.SCHEMA["fields"] if "default" not in field}
    assert without_default == REQUIRED_V1


def test_schema_types() -> None:
    types = {field["name"]: field["type"] for field in codecs.SCHEMA["fields"]}
    micros = {"type": "long", "logicalType": "timestamp-micros"}
    assert types["occurred_at"] == types["received_at"] == micros
    assert types["updated_at"] == ["null", micros]
    assert types["metadata"] == types["image_meta"] == {"type": "map", "values": "string"}
    for name in ("launched_at", "terminated_at", "deleted_at", "created_at", "message_id", "power_state"):
        assert types[name] == ["null", "string"]
    assert types["fault"][0] == "null"
    assert [f["name"] for f in types["fault"][1]["fields"]] == [
        "exception",
        "message",
        "code",
        "module_name",
        "function_name",
    ]


def test_the_schema_ships_as_package_data() -> None:
    import schemas

    path = Path(schemas.__file__).with_name("vm_status_event.avsc")
    assert json.loads(path.read_text()) == codecs.SCHEMA
    assert (Path(schemas.__file__).with_name("README.md")).is_file()


# --- fingerprint and single-object framing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "java_long"),
    # Published vectors of the Avro specification (share/test/data/schema-tests.txt).
    [("null", 7195948357588979594), ("int", 8247732601305521295), ("string", -8142146995180207161)],
)
def test_fingerprint_matches_the_avro_test_vectors(schema: str, java_long: int) -> None:
    assert codecs.fingerprint_bytes(parse_schema(schema)) == struct.pack("<q", java_long)


def test_fingerprint_of_the_event_schema() -> None:
    # Changing the schema changes this value: update it, and keep the old schema readable by adding it
    # to codecs._WRITER_SCHEMAS.
    assert codecs.FINGERPRINT_HEX == "95292a9022f3a0fc"
    assert codecs.fingerprint_bytes(parse_schema(codecs.SCHEMA)) == codecs.FINGERPRINT
    assert to_parsing_canonical_form(parse_schema(codecs.SCHEMA)) == codecs.CANONICAL_FORM
    assert "doc" not in codecs.CANONICAL_FORM


def test_single_object_framing() -> None:
    event = ALL_EVENTS[0]
    data = codecs.encode_avro(event)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == codecs.FINGERPRINT
    assert data[10:] == fastavro_body(event)
    assert schemaless_reader(io.BytesIO(data[10:]), codecs.PARSED_SCHEMA, None) == event


# --- every sample through every codec ----------------------------------------------------------------


@pytest.mark.parametrize("event", ALL_EVENTS, ids=EVENT_IDS)
def test_round_trip_every_sample_through_avro_and_json(event: dict[str, Any]) -> None:
    assert codecs.avro_body(event) == fastavro_body(event)
    avro = codecs.encode(event, "avro")
    assert codecs.decode(avro) == event
    assert codecs.decode(avro, "avro") == event
    as_json = codecs.encode(event, "json")
    assert codecs.decode(as_json) == event
    assert codecs.decode(as_json, "json") == event


@pytest.mark.parametrize("event", ALL_EVENTS, ids=EVENT_IDS)
def test_round_trip_every_sample_through_confluent(
    event: dict[str, Any], confluent: codecs.ConfluentCodec
) -> None:
    wire = codecs.encode(event, "confluent", confluent=confluent)
    assert codecs.decode(wire, confluent=confluent) == event
    assert codecs.decode(wire, "confluent", confluent=confluent) == event


def test_confluent_framing(confluent: codecs.ConfluentCodec) -> None:
    event = ALL_EVENTS[0]
    wire = confluent.encode(event)
    schema_id = int.from_bytes(wire[1:5], "big")
    assert wire[:1] == b"\x00"
    assert wire[5:] == fastavro_body(event)
    assert "eventfed.vm.events-value" in confluent.client.get_subjects()
    registered = confluent.client.get_schema(schema_id)
    assert json.loads(registered.schema_str) == codecs.SCHEMA


def test_confluent_framing_is_byte_for_byte_confluent_kafkas(confluent: codecs.ConfluentCodec) -> None:
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    serializer = AvroSerializer(confluent.client, codecs.SCHEMA_JSON)
    for topic in ("eventfed.vm.events", "feeds.framing.avro"):
        context = SerializationContext(topic, MessageField.VALUE)
        for event in ALL_EVENTS:
            assert confluent.encode(event, topic) == serializer(dict(event), context)


def test_each_topic_has_its_own_subject(confluent: codecs.ConfluentCodec) -> None:
    first = confluent.register("feeds.subject.one")
    second = confluent.register("feeds.subject.two")
    subjects = confluent.client.get_subjects()
    assert {"feeds.subject.one-value", "feeds.subject.two-value"} <= set(subjects)
    for subject, schema_id in (("feeds.subject.one-value", first), ("feeds.subject.two-value", second)):
        latest = confluent.client.get_latest_version(subject)
        assert latest.schema_id == schema_id
        assert json.loads(latest.schema.schema_str) == codecs.SCHEMA
    assert codecs.subject_for("eventfed.vm.events") == "eventfed.vm.events-value"


def test_a_registry_that_cannot_be_reached_is_one_clear_error() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient({"url": f"http://127.0.0.1:{port}", "max.retries": 0, "timeout": 2})
    unreachable = codecs.ConfluentCodec(client)
    with pytest.raises(codecs.RegistrationError, match=r"cannot register subject topic\.x-value") as caught:
        unreachable.register("topic.x")
    assert "\n" not in str(caught.value)


def test_schema_ids_outside_the_wire_format_are_refused() -> None:
    with pytest.raises(CodecError, match="does not fit"):
        codecs.encode_confluent(ALL_EVENTS[0], 2**31)
    with pytest.raises(CodecError, match="does not fit"):
        codecs.encode_confluent(ALL_EVENTS[0], -1)


# --- JSON: the spec's flat shape ---------------------------------------------------------------------


def test_json_shape() -> None:
    event = next(event for event in ALL_EVENTS if event["updated_at"] is not None)
    flat = json.loads(codecs.encode_json(event))
    assert list(flat) == list(codecs.FIELD_NAMES)
    assert flat["occurred_at"].endswith("Z")
    assert datetime.fromisoformat(flat["occurred_at"]) == event["occurred_at"]
    assert flat["received_at"] == "2026-11-25T15:00:00.123456Z"
    assert flat["updated_at"] == "2012-10-29T13:42:11.000000Z"
    assert codecs.event_to_json_dict(event) == flat


def test_json_progress_follows_the_legacy_convention() -> None:
    event = dict(ALL_EVENTS[0], progress=None)
    assert json.loads(codecs.encode_json(event))["progress"] == ""
    assert codecs.decode_json(codecs.encode_json(event))["progress"] is None
    event["progress"] = 0
    assert json.loads(codecs.encode_json(event))["progress"] == 0


def test_json_is_utf8() -> None:
    event = dict(ALL_EVENTS[0], display_name="serveur de données ✓")
    data = codecs.encode_json(event)
    assert "serveur de données ✓".encode() in data
    assert codecs.decode(data)["display_name"] == "serveur de données ✓"


def test_json_fields_added_later_take_their_default() -> None:
    flat = codecs.event_to_json_dict(ALL_EVENTS[0])
    for name in ("fault", "updated_at", "image_meta", "cell_name"):
        del flat[name]
    event = codecs.json_dict_to_event(flat)
    assert (event["fault"], event["updated_at"], event["image_meta"], event["cell_name"]) == (
        None,
        None,
        {},
        None,
    )


def test_onap_spec_example_in_gives_the_same_fields_out() -> None:
    raw = nova_samples.load(
        TEMPLATES / "compute.instance.power_off.start__notigen-compute.instance.power_off.start_4-02.json"
    )
    assert raw["event_type"] == "compute.instance.power_off.start"
    raw["payload"].update(json.loads(json.dumps(ONAP_SPEC_EXAMPLE)))
    event = normalise(raw, vim_id=VIM_ID, received_at=RECEIVED_AT)
    assert event is not None
    assert (event["status"], event["phase"], event["state"], event["state_description"]) == (
        "POWER_OFF",
        "start",
        "active",
        "powering-off",
    )
    for data in (codecs.encode_json(event), codecs.encode_json(codecs.decode(codecs.encode_avro(event)))):
        flat = json.loads(data)
        assert {name: flat[name] for name in ONAP_SPEC_EXAMPLE} == ONAP_SPEC_EXAMPLE


# --- decoder errors ----------------------------------------------------------------------------------


def test_unknown_fingerprint_is_named() -> None:
    data = bytearray(codecs.encode_avro(ALL_EVENTS[0]))
    data[2:10] = bytes.fromhex("0102030405060708")
    with pytest.raises(CodecError, match=r"unknown schema fingerprint 0102030405060708.*95292a9022f3a0fc"):
        codecs.decode(bytes(data))


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"", "auto", "unrecognised format"),
        (b"\x7fELF", "auto", "unrecognised format"),
        (b"[1, 2]", "auto", "unrecognised format"),
        (b"\xc3\x01\x00", "avro", "must start with C3 01"),
        (b"{}", "avro", "must start with C3 01"),
        (b"not json", "json", "not valid JSON"),
        (b"[1]", "json", "must be an object"),
        (b"{}", "json", "has no state"),
        (b"\xff\xfe{", "json", "not valid JSON"),
        (b"\x00\x00\x00\x00\x07\x02", "auto", "schema registry URL"),
        (b"{}", "xml", "unknown format"),
    ],
)
def test_decoder_errors(data: bytes, fmt: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        codecs.decode(data, fmt)


def test_truncated_and_padded_avro() -> None:
    data = codecs.encode_avro(ALL_EVENTS[0])
    with pytest.raises(CodecError, match="truncated or corrupt"):
        codecs.decode(data[:-20])
    with pytest.raises(CodecError, match="3 unexpected bytes"):
        codecs.decode(data + b"abc")


def test_json_that_does_not_fit_the_schema() -> None:
    flat = codecs.event_to_json_dict(ALL_EVENTS[0])
    with pytest.raises(CodecError, match="does not fit the schema"):
        codecs.decode_json(json.dumps({**flat, "memory_mb": "a lot"}))
    with pytest.raises(CodecError, match="occurred_at is not an ISO 8601 timestamp"):
        codecs.decode_json(json.dumps({**flat, "occurred_at": "tuesday"}))
    with pytest.raises(CodecError, match="occurred_at must be an ISO 8601 string"):
        codecs.decode_json(json.dumps({**flat, "occurred_at": 12}))


def test_confluent_unknown_schema_id(confluent: codecs.ConfluentCodec) -> None:
    wire = bytearray(confluent.encode(ALL_EVENTS[0]))
    wire[1:5] = (4242).to_bytes(4, "big")
    with pytest.raises(CodecError, match="schema id 4242"):
        codecs.decode(bytes(wire), confluent=confluent)
    with pytest.raises(CodecError, match="needs a schema registry"):
        codecs.encode(ALL_EVENTS[0], "confluent")
    with pytest.raises(CodecError, match="must start with 00"):
        confluent.decode(b"\x01\x00\x00\x00\x01\x00")


def test_missing_registry_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "confluent_kafka.schema_registry", None)
    with pytest.raises(CodecError, match=r"confluent-kafka\[schemaregistry\]"):
        codecs.ConfluentCodec("mock://missing")


@pytest.mark.parametrize(
    "change",
    [
        {"memory_mb": "512"},
        {"memory_mb": 2**31},
        {"instance_id": None},
        {"display_name": 12},
        {"metadata": {"a": 1}},
        {"display_name": "lone \ud800"},
        {"occurred_at": "2012-05-08"},
        {"fault": {"exception": 1}},
    ],
)
def test_events_that_do_not_fit_the_schema_are_codec_errors(change: dict[str, Any]) -> None:
    event = dict(ALL_EVENTS[0], **change)
    with pytest.raises(CodecError):
        codecs.encode_avro(event)
    with pytest.raises(CodecError):
        codecs.avro_body(event)


def test_missing_field_is_a_codec_error() -> None:
    event = dict(ALL_EVENTS[0])
    del event["vim_id"]
    with pytest.raises(CodecError):
        codecs.encode_avro(event)


def test_lone_surrogate_is_a_json_codec_error() -> None:
    with pytest.raises(CodecError):
        codecs.encode_json(dict(ALL_EVENTS[0], display_name="\udfff"))


_text = st.text(max_size=40)
_int = st.integers(min_value=-(2**31), max_value=2**31 - 1)
_time = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))


def _strategy_for(schema: Any) -> st.SearchStrategy[Any]:
    if isinstance(schema, list):
        return st.none() | _strategy_for(schema[1])
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(schema, dict) and schema.get("logicalType") == "timestamp-micros":
        return _time
    if kind == "string":
        return _text
    if kind == "int":
        return _int
    if kind == "map":
        return st.dictionaries(_text, _text, max_size=5)
    if kind == "record":
        return st.fixed_dictionaries(
            {field["name"]: _strategy_for(field["type"]) for field in schema["fields"]}
        )
    raise AssertionError(f"no strategy for {schema}")


valid_events = _strategy_for(codecs.SCHEMA)


@HYPOTHESIS
@given(valid_events)
def test_any_valid_event_round_trips_through_every_format(event: dict[str, Any]) -> None:
    assert codecs.decode(codecs.encode_avro(event)) == event
    assert codecs.decode(codecs.encode_json(event)) == event


def test_readme_maps_every_field() -> None:
    import schemas

    readme = Path(schemas.__file__).with_name("README.md").read_text(encoding="utf-8")
    for name in codecs.FIELD_NAMES:
        assert f"| `{name}` |" in readme, name
    assert codecs.FINGERPRINT_HEX in readme


@pytest.mark.parametrize(
    "micros",
    [0, -1, 1, 2**48 - 1, 2**48, 2**55 - 1, 2**55, -(2**48), -62135596800000000, 253402300799999999],
)
def test_timestamps_at_varint_boundaries_round_trip(micros: int) -> None:
    from datetime import timedelta

    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    event = dict(ALL_EVENTS[0], occurred_at=moment, received_at=moment, updated_at=moment)
    assert codecs.decode(codecs.encode_avro(event))["occurred_at"] == moment


def _decodes_or_codec_error(data: bytes, fmt: str = "auto") -> None:
    try:
        event = codecs.decode(data, fmt)
    except CodecError:
        return
    assert codecs.decode(codecs.encode_avro(event)) == event


@HYPOTHESIS
@given(st.binary(max_size=600))
def test_any_bytes_decode_or_give_a_codec_error(data: bytes) -> None:
    _decodes_or_codec_error(data)
    _decodes_or_codec_error(codecs.SINGLE_OBJECT_MAGIC + codecs.FINGERPRINT + data)


@HYPOTHESIS
@given(st.data())
def test_corrupted_events_decode_or_give_a_codec_error(data: st.DataObject) -> None:
    encoded = bytearray(codecs.encode_avro(data.draw(st.sampled_from(ALL_EVENTS), label="event")))
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        at = data.draw(st.integers(10, len(encoded) - 1), label="at")
        encoded[at] = data.draw(st.integers(0, 255), label="byte")
    cut = data.draw(st.integers(10, len(encoded)), label="cut")
    _decodes_or_codec_error(bytes(encoded[:cut]))


@HYPOTHESIS
@given(st.data())
def test_json_with_wrong_values_decodes_or_gives_a_codec_error(data: st.DataObject) -> None:
    from tests.unit.streams.test_normalise import json_values

    flat = codecs.event_to_json_dict(data.draw(st.sampled_from(ALL_EVENTS), label="event"))
    for name in data.draw(
        st.lists(st.sampled_from(codecs.FIELD_NAMES), min_size=1, max_size=3), label="fields"
    ):
        if data.draw(st.booleans(), label="delete"):
            flat.pop(name, None)
        else:
            flat[name] = data.draw(json_values, label="value")
    try:
        text = json.dumps(flat)
    except ValueError:
        return
    _decodes_or_codec_error(text.encode(), "json")


def test_json_with_a_lone_surrogate_is_a_codec_error() -> None:
    text = json.dumps({**codecs.event_to_json_dict(ALL_EVENTS[0]), "display_name": "web \ud800"})
    assert "\\ud800" in text
    with pytest.raises(CodecError, match="not valid Unicode"):
        codecs.decode_json(text.encode())


# --- the stream worker's fast paths: the same output as the plain ones ------------------------------


@pytest.mark.parametrize("event", ALL_EVENTS, ids=EVENT_IDS)
def test_json_dict_is_the_field_by_field_one(event: dict[str, Any]) -> None:
    fast = codecs.event_to_json_dict(event)
    plain = codecs._json_dict_by_plan(event)
    assert fast == plain
    assert list(fast) == list(plain) == list(codecs.FIELD_NAMES)
    for name in ("metadata", "image_meta"):
        assert fast[name] == event[name] and fast[name] is not event[name]


@HYPOTHESIS
@given(valid_events)
def test_json_dict_of_any_valid_event_is_the_field_by_field_one(event: dict[str, Any]) -> None:
    fast = codecs.event_to_json_dict(event)
    assert fast == codecs._json_dict_by_plan(event)
    assert list(fast) == list(codecs.FIELD_NAMES)


def test_json_dict_leaves_out_keys_outside_the_schema_and_fills_defaults() -> None:
    event = ALL_EVENTS[0]
    assert codecs.event_to_json_dict({**event, "extra": 1}) == codecs.event_to_json_dict(event)
    partial = {
        name: value for name, value in event.items() if name not in ("fault", "image_meta", "cell_name")
    }
    flat = codecs.event_to_json_dict(partial)
    assert list(flat) == list(codecs.FIELD_NAMES)
    assert (flat["fault"], flat["image_meta"], flat["cell_name"]) == (None, {}, None)
    assert flat["image_meta"] is not codecs.event_to_json_dict(partial)["image_meta"]


def test_json_dict_uses_the_timestamp_texts_it_is_given() -> None:
    event = ALL_EVENTS[0]
    texts = {"occurred_at": "from the notification"}
    flat = codecs.event_to_json_dict(event, timestamp_texts=texts)
    assert flat["occurred_at"] == "from the notification"
    assert flat["received_at"] == codecs.event_to_json_dict(event)["received_at"]


def _iso_by_conversion(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


_early, _late = datetime(1, 1, 2), datetime(9999, 12, 30)
_zones: st.SearchStrategy[tzinfo] = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(0))]
)


@HYPOTHESIS
@given(st.datetimes(_early, _late) | st.datetimes(_early, _late, timezones=_zones))
def test_iso_text_of_any_time(moment: datetime) -> None:
    assert codecs._iso(moment) == _iso_by_conversion(moment)


def _stdlib_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@pytest.mark.parametrize("event", ALL_EVENTS, ids=EVENT_IDS)
def test_json_bytes_are_the_standard_librarys(event: dict[str, Any]) -> None:
    flat = codecs.event_to_json_dict(event)
    assert codecs.encode_json_dict(flat) == _stdlib_json(flat)
    assert codecs.encode_json(event) == _stdlib_json(flat)


_any_text = st.text(st.characters(codec="utf-8"), max_size=40)


@HYPOTHESIS
@given(valid_events, _any_text, st.dictionaries(_any_text, _any_text, max_size=4))
def test_json_bytes_of_any_valid_event_are_the_standard_librarys(
    event: dict[str, Any], text: str, metadata: dict[str, str]
) -> None:
    flat = codecs.event_to_json_dict({**event, "display_name": text, "metadata": metadata})
    assert codecs.encode_json_dict(flat) == _stdlib_json(flat)


class _Name(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        {1: "a", None: "b", 2.5: "c"},
        {True: "t", False: "f"},
        {"big": 2**70, "negative": -(2**64)},
        {"name": _Name("subclass")},
        {"nested": {"list": [1, "two", None, {"three": 3}]}},
        {"control": '\x00\x1f\x7f\u2028\u2029\ufeff"\\/'},
    ],
)
def test_json_bytes_where_orjson_hands_over_to_the_standard_library(value: dict[Any, Any]) -> None:
    assert codecs.encode_json_dict(value) == _stdlib_json(value)


@pytest.mark.parametrize(
    "value",
    [{"when": datetime(2026, 1, 1, tzinfo=UTC)}, {"text": "lone \udfff"}, {"key \ud800": 1}, {"set": {1}}],
)
def test_json_bytes_that_cannot_be_written_are_codec_errors(value: dict[str, Any]) -> None:
    with pytest.raises(CodecError):
        codecs.encode_json_dict(value)
