"""Each contract is written once: the event's fields come from schemas/vm_status_event.avsc."""

from __future__ import annotations

from typing import get_type_hints

from bridge.api.openapi import openapi_document
from bridge.api.vocabulary import StateVocabulary
from bridge.settings import ApiSettings
from schemas import event_fields
from streams.normalise import VmStatusEvent

AVRO_FIELDS = [name for name, _type in event_fields()]


def test_the_event_typeddict_has_the_schema_fields_in_order():
    assert list(get_type_hints(VmStatusEvent)) == AVRO_FIELDS


def test_the_openapi_vm_record_is_derived_from_the_schema():
    document = openapi_document(ApiSettings(), StateVocabulary.from_catalogue(), auth=[])
    schemas = document["components"]["schemas"]
    record = next(s for s in schemas.values() if set(AVRO_FIELDS) <= set(s.get("properties", {})))
    assert list(record["properties"])[: len(AVRO_FIELDS)] == AVRO_FIELDS
    assert record["properties"]["memory_mb"]["type"] == ["integer", "number", "string", "null"]
    assert record["properties"]["fault"]["type"] == ["object", "null"]
