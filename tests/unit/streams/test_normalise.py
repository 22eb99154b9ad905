from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastavro.validation import validate
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas.vocabulary import CATALOGUE, lookup
from streams import codecs
from streams.normalise import (
    REASONS,
    MalformedNotification,
    json_timestamp_text,
    load_record,
    normalise,
    normalise_with_texts,
    parse_timestamp,
)
from tests.unit import nova_samples
from tests.unit.nova_samples import LEGACY, RECEIVED_AT, TEMPLATES, VERSIONED, VIM_ID

SPEC_FIELDS = [
    "state_description",
    "availability_zone",
    "terminated_at",
    "ephemeral_gb",
    "instance_type_id",
    "deleted_at",
    "reservation_id",
    "memory_mb",
    "display_name",
    "hostname",
    "state",
    "progress",
    "launched_at",
    "metadata",
    "node",
    "ramdisk_id",
    "access_ip_v6",
    "disk_gb",
    "access_ip_v4",
    "kernel_id",
    "host",
    "user_id",
    "image_ref_url",
    "cell_name",
    "root_gb",
    "tenant_id",
    "created_at",
    "instance_id",
    "instance_type",
    "vcpus",
    "image_meta",
    "architecture",
    "os_type",
    "instance_flavor_id",
]
EVENT_FIELDS = [
    "status",
    "phase",
    "vim_id",
    "event_type",
    "format",
    "message_id",
    "publisher_id",
    "priority",
    "occurred_at",
    "received_at",
    "updated_at",
    "power_state",
    "task_state",
    "fault",
]

# Every sample is an instance status event: none of them may normalise to None.
NOT_STATUS_EVENT_SAMPLES: frozenset[str] = frozenset()

HYPOTHESIS = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def run(raw: Any, **kwargs: Any) -> dict[str, Any] | None:
    kwargs.setdefault("vim_id", VIM_ID)
    kwargs.setdefault("received_at", RECEIVED_AT)
    event = normalise(raw, **kwargs)
    return None if event is None else dict(event)


def reason_of(raw: Any, **kwargs: Any) -> str:
    with pytest.raises(MalformedNotification) as caught:
        run(raw, **kwargs)
    assert caught.value.reason in REASONS
    assert str(caught.value)
    return caught.value.reason


def versioned(name: str = "instance-power_off-start.json") -> dict[str, Any]:
    return nova_samples.by_name(VERSIONED, name)


def legacy(name: str = "compute.instance.create.end__ceilometer.json") -> dict[str, Any]:
    return nova_samples.by_name(LEGACY, name)


def template(name: str) -> dict[str, Any]:
    return nova_samples.by_name(TEMPLATES, name)


def assert_valid_event(event: dict[str, Any]) -> None:
    assert set(event) == set(codecs.FIELD_NAMES) == set(SPEC_FIELDS) | set(EVENT_FIELDS)
    assert validate(event, codecs.PARSED_SCHEMA, raise_errors=True)
    for name in ("occurred_at", "received_at"):
        assert event[name].tzinfo is UTC
    assert event["updated_at"] is None or event["updated_at"].tzinfo is UTC


# --- every real sample ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", nova_samples.all_files(), ids=nova_samples.sample_id)
def test_every_sample_normalises_to_a_valid_event(path: Path) -> None:
    raw = nova_samples.load(path)
    event = run(raw)
    if nova_samples.sample_id(path) in NOT_STATUS_EVENT_SAMPLES:
        assert event is None
        return
    assert event is not None
    assert_valid_event(event)
    kind, phase = lookup(raw["event_type"])  # type: ignore[misc]
    assert (event["status"], event["phase"], event["event_type"]) == (kind, phase, raw["event_type"])
    assert event["vim_id"] == VIM_ID
    assert event["publisher_id"] == raw["publisher_id"]
    if path.parent == VERSIONED:
        data = raw["payload"]["nova_object.data"]
        assert event["format"] == "versioned"
        assert event["instance_id"] == data["uuid"]
        assert event["state"] == data["state"]
        assert event["task_state"] == data["task_state"]
        assert event["state_description"] == (data["task_state"] or "")
        assert event["power_state"] == data["power_state"]
        assert event["instance_type"] == data["flavor"]["nova_object.data"]["name"]
    else:
        payload = raw["payload"]
        assert event["format"] == "legacy"
        for name in ("instance_id", "state", "state_description", "tenant_id", "user_id", "instance_type"):
            assert event[name] == payload[name]
        for name in ("display_name", "host", "launched_at", "memory_mb", "vcpus", "disk_gb", "image_ref_url"):
            assert event[name] == payload.get(name)
        assert event["task_state"] == (payload["state_description"] or None)
        assert event["power_state"] is None
        assert event["message_id"] == raw.get("message_id")
        if "timestamp" in raw:
            assert event["occurred_at"] == parse_timestamp(raw["timestamp"], "timestamp")


def test_sample_counts() -> None:
    assert len(nova_samples.versioned_files()) == 101
    assert len(nova_samples.legacy_files()) == 21
    assert len(nova_samples.template_files()) == 98


def test_samples_that_are_not_status_events_are_exactly_the_expected_set() -> None:
    ignored = {
        nova_samples.sample_id(path)
        for path in nova_samples.all_files()
        if normalise(nova_samples.load(path), vim_id=VIM_ID, received_at=RECEIVED_AT) is None
    }
    assert ignored == NOT_STATUS_EVENT_SAMPLES


@pytest.mark.parametrize(
    "event_type",
    [
        "compute.metrics.update",
        "scheduler.select_destinations.end",
        "aggregate.add_host.end",
        "aggregate.cache_images.progress",
        "compute_task.build_instances.error",
        "keypair.import.end",
        "service.update",
        "compute.instance.teleport.start",
    ],
)
def test_other_notifications_give_none(event_type: str) -> None:
    raw = {"event_type": event_type, "publisher_id": "nova-compute:compute", "payload": {"anything": [1, 2]}}
    assert normalise(raw) is None
    # Not even a vim_id or payload is needed to decide that.
    assert normalise({"event_type": event_type}) is None


# --- the versioned mapping ------------------------------------------------------------------------


def test_versioned_power_off_start_fields() -> None:
    event = run(versioned())
    assert event is not None
    assert event == {
        "state_description": "powering-off",
        "availability_zone": "nova",
        "terminated_at": None,
        "ephemeral_gb": 0,
        "instance_type_id": None,
        "deleted_at": None,
        "reservation_id": "r-npxv0e40",
        "memory_mb": 512,
        "display_name": "some-server",
        "hostname": "some-server",
        "state": "active",
        "progress": 0,
        "launched_at": "2012-10-29T13:42:11Z",
        "metadata": {},
        "node": "fake-mini",
        "ramdisk_id": "",
        "access_ip_v6": None,
        "disk_gb": 1,
        "access_ip_v4": "192.168.1.3",
        "kernel_id": "",
        "host": "compute",
        "user_id": "fake",
        "image_ref_url": "155d900f-4e14-4e4c-a73d-069cbf4541e6",
        "cell_name": None,
        "root_gb": 1,
        "tenant_id": "6f70656e737461636b20342065766572",
        "created_at": "2012-10-29T13:42:11Z",
        "instance_id": "178b0921-8f85-4257-88b6-2e743b5a975c",
        "instance_type": "test_flavor",
        "vcpus": 1,
        "image_meta": {},
        "architecture": "x86_64",
        "os_type": None,
        "instance_flavor_id": "a22d5517-147c-4147-a0d1-e698df5cd4e3",
        "status": "POWER_OFF",
        "phase": "start",
        "vim_id": VIM_ID,
        "event_type": "instance.power_off.start",
        "format": "versioned",
        "message_id": None,
        "publisher_id": "nova-compute:compute",
        "priority": "INFO",
        # No envelope timestamp in the sample: the instance's updated_at stands in.
        "occurred_at": datetime(2012, 10, 29, 13, 42, 11, tzinfo=UTC),
        "received_at": RECEIVED_AT,
        "updated_at": datetime(2012, 10, 29, 13, 42, 11, tzinfo=UTC),
        "power_state": "running",
        "task_state": "powering-off",
        "fault": None,
    }


def test_versioned_fault() -> None:
    event = run(versioned("instance-create-error.json"))
    assert event is not None
    assert (event["status"], event["phase"], event["priority"]) == ("CREATE", "error", "ERROR")
    assert event["fault"] == {
        "exception": "FlavorDiskTooSmall",
        "message": "The created instance's disk would be too small.",
        "code": None,
        "module_name": "nova.tests.functional.notification_sample_tests.test_instance",
        "function_name": "_build_resources",
    }


def test_versioned_ip_addresses_give_first_v4_and_v6() -> None:
    raw = versioned()
    addresses = raw["payload"]["nova_object.data"]["ip_addresses"]
    template = addresses[0]
    v6 = copy.deepcopy(template)
    v6["nova_object.data"].update(address="2001:db8::5", version=6)
    second_v4 = copy.deepcopy(template)
    second_v4["nova_object.data"].update(address="10.1.1.1", version=4)
    no_version = copy.deepcopy(template)
    no_version["nova_object.data"].pop("version")
    no_version["nova_object.data"]["address"] = "2001:db8::9"
    addresses[:] = [no_version, second_v4, v6]
    event = run(raw)
    assert event is not None
    assert (event["access_ip_v4"], event["access_ip_v6"]) == ("10.1.1.1", "2001:db8::9")


def test_versioned_update_accepts_major_2_and_uses_the_audit_period_when_no_time_is_given() -> None:
    raw = versioned("instance-update.json")
    assert raw["payload"]["nova_object.version"] == "2.1"
    assert raw["payload"]["nova_object.data"]["updated_at"] is None
    event = normalise(raw, vim_id=VIM_ID)
    assert event is not None
    assert event["status"] == "UPDATE" and event["phase"] == "none"
    assert event["occurred_at"] == datetime(2012, 10, 29, 13, 42, 11, tzinfo=UTC)
    assert event["received_at"] == event["occurred_at"]
    assert event["updated_at"] is None


@pytest.mark.parametrize(
    ("name", "version", "reason"),
    [
        ("InstanceActionPayload", "2.0", "unsupported_payload_version"),
        ("InstanceActionPayload", "0.9", "unsupported_payload_version"),
        ("InstanceUpdatePayload", "3.0", "unsupported_payload_version"),
        ("InstanceActionPayload", "1", "bad_payload_version"),
        ("InstanceActionPayload", "one.two", "bad_payload_version"),
        ("InstanceActionPayload", None, "bad_payload_version"),
        ("InstanceActionPayload", 1.9, "bad_field_type"),
    ],
)
def test_versioned_major_version_is_checked(name: str, version: Any, reason: str) -> None:
    raw = versioned()
    raw["payload"]["nova_object.name"] = name
    raw["payload"]["nova_object.version"] = version
    assert reason_of(raw) == reason


@pytest.mark.parametrize(
    ("name", "version"), [("InstanceActionPayload", "1.99"), ("InstanceExistsPayload", "2.7")]
)
def test_versioned_minor_versions_are_accepted(name: str, version: str) -> None:
    raw = versioned()
    raw["payload"]["nova_object.name"] = name
    raw["payload"]["nova_object.version"] = version
    assert run(raw) is not None


def test_nested_flavor_major_version_is_checked() -> None:
    raw = versioned()
    raw["payload"]["nova_object.data"]["flavor"]["nova_object.version"] = "2.0"
    assert reason_of(raw) == "unsupported_payload_version"


def test_versioned_without_flavor() -> None:
    raw = versioned()
    raw["payload"]["nova_object.data"]["flavor"] = None
    event = run(raw)
    assert event is not None
    assert [event[k] for k in ("instance_type", "memory_mb", "vcpus", "disk_gb", "instance_flavor_id")] == [
        None
    ] * 5


def test_versioned_payload_must_be_a_nova_object() -> None:
    raw = versioned()
    raw["payload"] = raw["payload"]["nova_object.data"]
    assert reason_of(raw) == "missing_nova_object_data"


# --- the legacy mapping and its envelope variants -------------------------------------------------


def test_legacy_fields_come_through_unchanged() -> None:
    raw = legacy()
    event = run(raw)
    assert event is not None
    payload = raw["payload"]
    for name in SPEC_FIELDS:
        if name == "progress":
            continue
        assert event[name] == payload.get(name, {} if name in ("metadata", "image_meta") else None), name
    assert event["occurred_at"] == datetime(2012, 5, 8, 20, 23, 48, 28195, tzinfo=UTC)
    assert event["message_id"] == "dae6f69c-00e0-41c0-b371-41ec3b7f4451"
    assert event["updated_at"] is None


def test_legacy_progress_empty_string_is_null_and_numbers_stay() -> None:
    raw = legacy()
    raw["payload"]["progress"] = ""
    assert run(raw)["progress"] is None  # type: ignore[index]
    raw["payload"]["progress"] = 40
    assert run(raw)["progress"] == 40  # type: ignore[index]


def test_legacy_context_keys_and_unique_id_are_ignored() -> None:
    raw = template("compute.instance.power_off.start__notigen-compute.instance.power_off.start_4-02.json")
    assert any(key.startswith("_context_") for key in raw)
    event = run(raw)
    assert event is not None
    assert (event["status"], event["phase"], event["state"], event["state_description"]) == (
        "POWER_OFF",
        "start",
        "active",
        "powering-off",
    )
    assert event["task_state"] == "powering-off"


def test_legacy_without_priority_timestamp_or_message_id() -> None:
    raw = legacy("compute.instance.delete.end__watcher.json")
    assert not {"priority", "timestamp", "message_id"} & set(raw)
    assert raw["publisher_id"] == "compute:compute"
    event = run(raw)
    assert event is not None
    assert event["priority"] == "INFO"
    assert event["message_id"] is None
    assert event["publisher_id"] == "compute:compute"
    assert event["occurred_at"] == RECEIVED_AT


def test_missing_priority_of_an_error_event_is_error() -> None:
    raw = template("compute.instance.create.error__notigen-compute.instance.create.start_65-22.json")
    del raw["priority"]
    assert run(raw)["priority"] == "ERROR"  # type: ignore[index]


def test_legacy_metadata_list_becomes_an_empty_map() -> None:
    raw = legacy("compute.instance.exists__ceilometer-metadata_list.json")
    assert raw["payload"]["metadata"] == []
    event = run(raw)
    assert event is not None
    assert event["metadata"] == {}
    assert event["status"] == "EXISTS"


def test_legacy_exists_without_timestamp_uses_the_audit_period_end() -> None:
    raw = legacy("compute.instance.exists__ceilometer.json")
    del raw["timestamp"]
    event = normalise(raw, vim_id=VIM_ID)
    assert event is not None
    assert event["occurred_at"] == parse_timestamp(raw["payload"]["audit_period_ending"], "x")
    assert event["received_at"] == event["occurred_at"]


def test_extra_top_level_keys_are_ignored() -> None:
    raw = legacy("compute.instance.create.end__designate.json")
    assert "payload_v6" in raw
    event = run(raw)
    assert event is not None
    assert event["access_ip_v4"] == raw["payload"]["access_ip_v4"]


def test_trimmed_legacy_payload() -> None:
    raw = legacy("compute.instance.update__searchlight-error-final.json")
    assert len(raw["payload"]) == 10
    event = run(raw)
    assert event is not None
    assert (event["state"], event["instance_type"], event["host"], event["image_meta"]) == (
        "error",
        "m1.really-big",
        None,
        {},
    )


def test_legacy_fault() -> None:
    raw = template("compute.instance.create.error__notigen-compute.instance.create.start_65-22.json")
    event = run(raw)
    assert event is not None
    assert event["fault"] == {
        "exception": None,
        "message": raw["payload"]["message"],
        "code": 500,
        "module_name": None,
        "function_name": None,
    }


def test_numbers_and_numeric_strings_are_coerced() -> None:
    raw = legacy()
    raw["payload"].update(
        memory_mb="2048", instance_flavor_id=5, vcpus=2.0, metadata={"a": 1, "b": True, "c": None}
    )
    raw["priority"] = "warn"
    event = run(raw)
    assert event is not None
    assert (event["memory_mb"], event["instance_flavor_id"], event["vcpus"]) == (2048, "5", 2)
    assert event["metadata"] == {"a": "1", "b": "True", "c": ""}
    assert event["priority"] == "WARN"


def test_oslo_envelope_is_unwrapped() -> None:
    raw = legacy()
    wrapped = {"oslo.version": "2.0", "oslo.message": json.dumps(raw), "vim_id": "other_vim"}
    event = normalise(wrapped, received_at=RECEIVED_AT)
    assert event == {**run(raw), "vim_id": "other_vim"}  # type: ignore[dict-item]
    assert reason_of({"oslo.version": "2.0", "oslo.message": "{not json"}) == "bad_oslo_envelope"
    assert reason_of({"oslo.version": "2.0", "oslo.message": "[1]"}) == "bad_oslo_envelope"
    assert reason_of({"oslo.version": "2.0", "oslo.message": 7}) == "bad_field_type"


# --- the raw record, vim_id and time ---------------------------------------------------------------


def test_raw_record_carries_vim_id_and_received_at() -> None:
    raw = {**legacy(), "vim_id": "owner_region", "received_at": "2026-11-25T15:00:00.123456+00:00"}
    event = normalise(raw, vim_id="ignored_vim", received_at=datetime(2000, 1, 1, tzinfo=UTC))
    assert event is not None
    assert event["vim_id"] == "owner_region"
    assert event["received_at"] == datetime(2026, 11, 25, 15, 0, 0, 123456, tzinfo=UTC)


def test_without_vim_id_anywhere() -> None:
    assert reason_of(legacy(), vim_id=None) == "missing_vim_id"
    assert reason_of({**legacy(), "vim_id": ""}, vim_id=None) == "missing_vim_id"
    assert reason_of({**legacy(), "vim_id": 12}) == "bad_field_type"


def test_without_received_at_the_occurrence_time_is_used() -> None:
    event = normalise(legacy(), vim_id=VIM_ID)
    assert event is not None
    assert event["received_at"] == event["occurred_at"] == datetime(2012, 5, 8, 20, 23, 48, 28195, tzinfo=UTC)


def test_without_any_time() -> None:
    raw = versioned("instance-create-start.json")
    assert raw["payload"]["nova_object.data"]["updated_at"] is None
    assert reason_of(raw, received_at=None) == "missing_timestamp"
    event = run(raw)
    assert event is not None
    assert event["occurred_at"] == event["received_at"] == RECEIVED_AT


def test_timestamps_become_aware_utc() -> None:
    assert parse_timestamp("2012-05-08 20:23:48.028195", "t") == datetime(
        2012, 5, 8, 20, 23, 48, 28195, tzinfo=UTC
    )
    assert parse_timestamp("2012-05-08T22:23:48+02:00", "t") == datetime(2012, 5, 8, 20, 23, 48, tzinfo=UTC)
    assert parse_timestamp("2012-05-08T20:23:48Z", "t").tzinfo is UTC
    assert parse_timestamp("2012-05-08", "t") == datetime(2012, 5, 8, tzinfo=UTC)
    naive = datetime(2012, 5, 8, 20, 23, 48)
    assert parse_timestamp(naive, "t") == naive.replace(tzinfo=UTC)
    other_zone = datetime(2012, 5, 8, 22, 23, 48, tzinfo=timezone(timedelta(hours=2)))
    assert parse_timestamp(other_zone, "t").tzinfo is UTC
    raw = {**legacy(), "timestamp": "2012-05-08 20:23:48.028195"}
    event = normalise(raw, vim_id=VIM_ID, received_at=datetime(2026, 1, 1))
    assert event is not None
    assert event["received_at"] == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("value", ["yesterday", "2012-13-45 10:00:00", "0001-01-01T00:00:00+01:00"])
def test_bad_timestamps(value: str) -> None:
    assert reason_of({**legacy(), "timestamp": value}) == "bad_timestamp"


# --- malformed input: one precise reason each ------------------------------------------------------


def _without(raw: dict[str, Any], *path: str) -> dict[str, Any]:
    target = raw
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return raw


def _with(raw: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: [legacy()], "not_an_object"),
        (lambda: "compute.instance.update", "not_an_object"),
        (lambda: _without(legacy(), "event_type"), "missing_event_type"),
        (lambda: _with(legacy(), 42, "event_type"), "bad_field_type"),
        (lambda: _without(legacy(), "payload"), "missing_payload"),
        (lambda: _with(legacy(), ["x"], "payload"), "bad_field_type"),
        (lambda: _without(legacy(), "payload", "instance_id"), "missing_instance_id"),
        (lambda: _with(legacy(), "", "payload", "instance_id"), "missing_instance_id"),
        (lambda: _with(legacy(), {"id": 1}, "payload", "instance_id"), "bad_field_type"),
        (lambda: _without(versioned(), "payload", "nova_object.data", "uuid"), "missing_instance_id"),
        (lambda: _without(legacy(), "payload", "state"), "missing_state"),
        (lambda: _without(legacy(), "publisher_id"), "missing_publisher_id"),
        (lambda: _with(legacy(), "lots", "payload", "memory_mb"), "bad_field_type"),
        (lambda: _with(legacy(), 2**40, "payload", "memory_mb"), "bad_field_type"),
        (lambda: _with(legacy(), True, "payload", "vcpus"), "bad_field_type"),
        (lambda: _with(legacy(), 1.5, "payload", "vcpus"), "bad_field_type"),
        (lambda: _with(legacy(), ["a"], "payload", "display_name"), "bad_field_type"),
        (lambda: _with(legacy(), {"k": {"nested": 1}}, "payload", "metadata"), "bad_field_type"),
        (lambda: _with(legacy(), "x=y", "payload", "image_meta"), "bad_field_type"),
        (lambda: _with(legacy(), "web \ud800", "payload", "display_name"), "bad_text"),
        (lambda: _with(legacy(), {"k\udfff": "v"}, "payload", "metadata"), "bad_text"),
        (lambda: _with(legacy(), 5, "timestamp"), "bad_field_type"),
        (lambda: _with(versioned(), "nope", "payload", "nova_object.data"), "bad_field_type"),
        (lambda: _with(versioned(), "nope", "payload", "nova_object.data", "ip_addresses"), "bad_field_type"),
        (lambda: _with(versioned(), [1], "payload", "nova_object.data", "ip_addresses"), "bad_field_type"),
        (
            lambda: _with(versioned(), {"x": 1}, "payload", "nova_object.data", "fault"),
            "missing_nova_object_data",
        ),
        (lambda: _with(versioned(), "soon", "payload", "nova_object.data", "updated_at"), "bad_timestamp"),
        (
            lambda: _with(
                versioned(), 2**31, "payload", "nova_object.data", "flavor", "nova_object.data", "root_gb"
            ),
            "bad_field_type",
        ),
    ],
)
def test_malformed_notifications_have_a_precise_reason(make: Any, reason: str) -> None:
    assert reason_of(make()) == reason


def test_error_names_the_field() -> None:
    with pytest.raises(MalformedNotification) as caught:
        run(_with(legacy(), "lots", "payload", "memory_mb"))
    assert caught.value.field == "memory_mb"
    assert "memory_mb" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_input_is_not_modified() -> None:
    raw = versioned()
    before = copy.deepcopy(raw)
    run(raw)
    assert raw == before


# --- properties -------------------------------------------------------------------------------------

_text = st.text(max_size=12) | st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**31), max_value=2**31 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _text
)
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
_known_keys = sorted(
    {
        *SPEC_FIELDS,
        "uuid",
        "host_name",
        "task_state",
        "power_state",
        "flavor",
        "ip_addresses",
        "fault",
        "updated_at",
    }
    | {
        "nova_object.data",
        "nova_object.version",
        "nova_object.name",
        "audit_period_ending",
        "exception",
        "code",
    }
)
instance_like = st.fixed_dictionaries(
    {"event_type": st.sampled_from(sorted(CATALOGUE))},
    optional={
        "payload": st.dictionaries(st.sampled_from(_known_keys), json_values, max_size=12) | json_values,
        "publisher_id": json_values,
        "timestamp": json_values | st.just("2012-05-08 20:23:48.028195"),
        "priority": json_values,
        "message_id": json_values,
        "vim_id": json_values,
        "received_at": json_values,
    },
)


def _check(raw: Any) -> None:
    """The property: an event that is valid and encodes, None, or MalformedNotification. Nothing else."""
    try:
        result = normalise(raw, vim_id=VIM_ID, received_at=RECEIVED_AT)
    except MalformedNotification as exc:
        assert exc.reason in REASONS
        event(f"malformed: {exc.reason}")
        return
    if result is None:
        event("not a status event")
        return
    event("normalised")
    assert_valid_event(dict(result))
    assert codecs.decode(codecs.encode(result, "avro")) == result
    assert codecs.decode(codecs.encode(result, "json")) == result


@HYPOTHESIS
@given(json_values)
def test_any_json_value_normalises_or_is_malformed(raw: Any) -> None:
    _check(raw)


@HYPOTHESIS
@given(instance_like)
def test_any_instance_shaped_object_normalises_or_is_malformed(raw: dict[str, Any]) -> None:
    _check(raw)


_SAMPLES = nova_samples.all_files()


def _mutation_targets(raw: dict[str, Any]) -> list[dict[str, Any]]:
    targets = [raw]
    payload = raw.get("payload")
    if isinstance(payload, dict):
        targets.append(payload)
        data = payload.get("nova_object.data")
        if isinstance(data, dict):
            targets.append(data)
            for key in ("flavor", "fault", "audit_period"):
                nested = data.get(key)
                if isinstance(nested, dict):
                    targets.append(nested)
                    if isinstance(nested.get("nova_object.data"), dict):
                        targets.append(nested["nova_object.data"])
            for item in data.get("ip_addresses") or []:
                targets.append(item)
    return targets


@HYPOTHESIS
@given(st.data())
def test_mutated_real_samples_normalise_or_are_malformed(data: st.DataObject) -> None:
    raw = nova_samples.load(data.draw(st.sampled_from(_SAMPLES), label="sample"))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3), label="mutations")):
        targets = _mutation_targets(raw)
        target = data.draw(st.sampled_from(targets), label="object")
        if not target:
            continue
        key = data.draw(st.sampled_from(sorted(target)), label="key")
        if data.draw(st.booleans(), label="delete"):
            del target[key]
        else:
            target[key] = data.draw(json_values, label="value")
    _check(raw)


# --- the stream worker's fast paths: the same results as the plain ones ----------------------------


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0, but a record reader must not say so)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


def _outcome(load: Any, data: Any) -> Any:
    try:
        return ("value", load(data))
    except (ValueError, RecursionError) as exc:
        return ("error", type(exc), str(exc))


def _assert_loads_like_json(data: bytes) -> None:
    fast, plain = _outcome(load_record, data), _outcome(json.loads, data)
    if plain[0] == "value":
        assert fast[0] == "value" and _same(fast[1], plain[1]), data[:200]
    else:
        assert fast == plain, data[:200]


@pytest.mark.parametrize("path", nova_samples.all_files(), ids=nova_samples.sample_id)
def test_load_record_reads_every_sample_as_json_loads_does(path: Path) -> None:
    data = json.dumps(nova_samples.load(path)).encode()
    assert _same(load_record(data), json.loads(data))


@pytest.mark.parametrize(
    "data",
    [
        b'{"metadata": {"big": 18446744073709551616, "small": -9223372036854775809}}',
        b'{"n": 123456789012345678901234567890, "m": 1234567890123456789}',
        b'{"n": 18446744073709551615, "m": -9223372036854775808}',
        b'{"f": NaN, "g": Infinity, "h": -Infinity, "i": 1e400}',
        b'{"s": "web \\ud800", "t": "\\udfff"}',
        b'\xef\xbb\xbf{"a": 1}',
        '{"a": "é"}'.encode("utf-16"),
        '{"a": "\ud800"}'.encode("utf-8", "surrogatepass"),
        b"[" * 5000 + b"]" * 5000,
        b'{"a": 1, "a": 2, "b": 3}',
        b'{"a": -0.0, "b": -0, "c": 1E2, "d": 0.1}',
        b"",
        b"{",
        b"not json",
        b"\xff\xfe\x00",
        b'{"a": 1} trailing',
    ],
)
def test_load_record_matches_json_loads_on_edge_cases(data: bytes) -> None:
    _assert_loads_like_json(data)


def test_load_record_accepts_what_json_loads_accepts() -> None:
    text = json.dumps(legacy())
    assert load_record(text) == load_record(bytearray(text.encode())) == json.loads(text)


@HYPOTHESIS
@given(json_values, st.booleans())
def test_any_json_document_loads_as_json_loads_does(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    _assert_loads_like_json(text.encode("utf-8", "surrogatepass"))


@HYPOTHESIS
@given(st.data())
def test_damaged_json_loads_or_fails_as_json_loads_does(data: st.DataObject) -> None:
    raw = json.dumps(nova_samples.load(data.draw(st.sampled_from(_SAMPLES), label="sample"))).encode()
    damaged = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3), label="changes")):
        at = data.draw(st.integers(0, len(damaged) - 1), label="at")
        damaged[at] = data.draw(st.integers(0, 255), label="byte")
    _assert_loads_like_json(bytes(damaged))


def _stamped(raw: dict[str, Any], **kwargs: Any) -> tuple[dict[str, Any], dict[str, str]]:
    kwargs.setdefault("vim_id", VIM_ID)
    kwargs.setdefault("received_at", RECEIVED_AT)
    normalised = normalise_with_texts(raw, **kwargs)
    assert normalised is not None
    return dict(normalised.event), normalised.timestamp_texts


@pytest.mark.parametrize("path", nova_samples.all_files(), ids=nova_samples.sample_id)
def test_stamps_are_the_json_text_of_the_events_own_timestamps(path: Path) -> None:
    raw = nova_samples.load(path)
    raw["received_at"] = "2026-11-25T15:00:00.123456+00:00"
    event, stamps = _stamped(raw)
    assert event == run(raw)
    formatted = codecs.event_to_json_dict(event)
    assert "received_at" in stamps
    for name, text in stamps.items():
        assert text == formatted[name], name
    assert codecs.event_to_json_dict(event, timestamp_texts=stamps) == formatted


def test_stamps_of_the_usual_shapes() -> None:
    raw = versioned("instance-update.json")
    raw["timestamp"] = "2026-11-25 12:00:00.250000"
    raw["received_at"] = "2026-11-25T12:00:00+00:00"
    raw["payload"]["nova_object.data"]["updated_at"] = "2026-11-25T11:59:59Z"
    _, stamps = _stamped(raw)
    assert stamps == {
        "occurred_at": "2026-11-25T12:00:00.250000Z",
        "received_at": "2026-11-25T12:00:00.000000Z",
        "updated_at": "2026-11-25T11:59:59.000000Z",
    }
    del raw["received_at"]
    event, stamps = _stamped(raw, received_at=None)
    assert event["received_at"] == event["occurred_at"]
    assert stamps["received_at"] == stamps["occurred_at"] == "2026-11-25T12:00:00.250000Z"
    # A time given by the caller, or one in another zone, has no text of its own: it is formatted.
    _, stamps = _stamped(raw)
    assert "received_at" not in stamps
    raw["timestamp"] = "2026-11-25T14:00:00.250000+02:00"
    _, stamps = _stamped(raw)
    assert "occurred_at" not in stamps


_moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))


@HYPOTHESIS
@given(_moments, st.sampled_from([" ", "T"]), st.sampled_from(["", "Z", "+00:00"]), st.booleans())
def test_json_timestamp_text_is_what_formatting_gives(
    moment: datetime, separator: str, zone: str, whole_second: bool
) -> None:
    if whole_second:
        moment = moment.replace(microsecond=0)
    for timespec in ("seconds", "microseconds"):
        text = moment.isoformat(sep=separator, timespec=timespec) + zone
        assert json_timestamp_text(text) == codecs._iso(parse_timestamp(text, "t")), text
    # Nova's str(utcnow()) drops the fraction of a whole second.
    assert json_timestamp_text(str(moment)) == codecs._iso(parse_timestamp(str(moment), "t"))


@pytest.mark.parametrize(
    "text",
    [
        "2012-05-08T22:23:48+02:00",
        "2012-05-08T20:23:48-00:00",
        "2012-05-08",
        "2026-W48-3T12:00:00.123456",
        "2026-11-25T12:00:00.12345Z",
        "2026-11-25T12:00:00.1234567",
        "2026-11-25T12:00:00,123456",
        "2026-11-25T12:00:00.123",
        "2026-11-25T12:00",
        "20261125T120000",
        "2026-11-25x12:00:00",
        "\uff12\uff10\uff12\uff16-11-25 12:00:00",
        "",
    ],
)
def test_json_timestamp_text_leaves_other_shapes_to_formatting(text: str) -> None:
    assert json_timestamp_text(text) is None


def test_json_timestamp_text_of_what_is_not_a_string() -> None:
    assert json_timestamp_text(None) is None
    assert json_timestamp_text(datetime(2026, 1, 1, tzinfo=UTC)) is None
    assert json_timestamp_text(1764072000) is None


def test_an_accepted_payload_version_does_not_let_an_unsupported_one_through() -> None:
    assert run(versioned()) is not None
    raw = versioned()
    raw["payload"]["nova_object.version"] = "9.0"
    assert reason_of(raw) == "unsupported_payload_version"
    raw = versioned()
    raw["payload"]["nova_object.data"]["flavor"]["nova_object.version"] = "2.0"
    assert reason_of(raw) == "unsupported_payload_version"


def test_string_fields_off_the_fast_path() -> None:
    raw = legacy()
    raw["payload"].update(display_name="serveur de données ✓", instance_flavor_id=0, kernel_id="")
    event = run(raw)
    assert event is not None
    assert (event["display_name"], event["instance_flavor_id"], event["kernel_id"]) == (
        "serveur de données ✓",
        "0",
        "",
    )
    raw["payload"]["ramdisk_id"] = False
    assert reason_of(raw) == "bad_field_type"
    raw = versioned()
    raw["payload"]["nova_object.data"].update(display_name="ünïcode", host_name=7, os_type="")
    event = run(raw)
    assert event is not None
    assert (event["display_name"], event["hostname"], event["os_type"]) == ("ünïcode", "7", "")
