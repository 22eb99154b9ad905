"""The JSON Schema of the event's JSON form: derived from the Avro schema, and what is written."""

from __future__ import annotations

import json

import jsonschema
import pytest

import schemas
from bridge.simulator.novasim import SimulatedCloud, raw_record
from streams import codecs
from streams.normalise import normalise
from tests.unit import nova_samples
from tests.unit.nova_samples import RECEIVED_AT, VIM_ID

VALIDATOR = jsonschema.Draft202012Validator(
    json.loads(schemas.event_json_schema_text()),
    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
)
SAMPLE_EVENTS = [
    event
    for path in nova_samples.all_files()
    if (event := normalise(nova_samples.load(path), vim_id=VIM_ID, received_at=RECEIVED_AT)) is not None
]


def json_form(event) -> dict:
    return json.loads(codecs.encode_json_dict(codecs.event_to_json_dict(event)))


def test_the_shipped_file_is_derived_from_the_avro_schema():
    jsonschema.Draft202012Validator.check_schema(json.loads(schemas.event_json_schema_text()))
    assert json.loads(schemas.event_json_schema_text()) == schemas.event_json_schema(), (
        "schemas/vm_status_event.schema.json is stale: regenerate it from schemas.event_json_schema()"
    )


def test_every_real_sample_event_is_valid_json():
    assert len(SAMPLE_EVENTS) > 50
    for event in SAMPLE_EVENTS:
        VALIDATOR.validate(json_form(event))


def test_every_simulated_event_is_valid_json():
    cloud = SimulatedCloud(seed=3)
    checked = 0
    for index in range(8):
        vm = cloud.new_vm(index)
        for notification in cloud.lifecycle(vm, "legacy" if index % 2 else "versioned"):
            record = raw_record(notification, VIM_ID, cloud.tick())
            event = normalise(record, vim_id=VIM_ID, received_at=RECEIVED_AT)
            if event is not None:
                VALIDATOR.validate(json_form(event))
                checked += 1
    assert checked > 50


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d.pop("instance_id"),
        lambda d: d.update(extra_field=1),
        lambda d: d.update(occurred_at="yesterday"),
        lambda d: d.update(memory_mb="512"),
        lambda d: d.update(progress="half"),
    ],
)
def test_a_broken_event_is_refused(breakage):
    document = json_form(SAMPLE_EVENTS[0])
    breakage(document)
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(document)


def test_eventfed_schema_prints_it(capsys):
    from bridge.cli import main

    assert main(["schema", "--json-schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schemas.event_json_schema()
