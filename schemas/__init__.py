"""The VM status event contract: the Avro schema and its documentation, shipped as package data."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

EVENT_SCHEMA_FILE = "vm_status_event.avsc"


def event_schema_text() -> str:
    return resources.files(__name__).joinpath(EVENT_SCHEMA_FILE).read_text(encoding="utf-8")


@cache
def event_fields() -> tuple[tuple[str, Any], ...]:
    """(name, Avro type) of every field of the event, in the schema's order."""
    schema = json.loads(event_schema_text())
    return tuple((field["name"], field["type"]) for field in schema["fields"])


EVENT_JSON_SCHEMA_FILE = "vm_status_event.schema.json"
# RFC 3339 in UTC, as the JSON form writes it; the pattern holds where `format` is not checked.
_TIMESTAMP = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$",
}


def _json_type(avro_type: Any, field_name: str) -> dict[str, Any]:
    """The JSON Schema of a value of an Avro type, in the event's JSON form."""
    if isinstance(avro_type, list):
        options = [_json_type(t, field_name) for t in avro_type]
        return options[0] if len(options) == 1 else {"anyOf": options}
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "timestamp-micros":
            return dict(_TIMESTAMP)
        if avro_type["type"] == "map":
            return {"type": "object", "additionalProperties": _json_type(avro_type["values"], field_name)}
        if avro_type["type"] == "record":
            return {
                "type": "object",
                "properties": {f["name"]: _json_type(f["type"], f["name"]) for f in avro_type["fields"]},
                "required": [f["name"] for f in avro_type["fields"]],
                "additionalProperties": False,
            }
        return _json_type(avro_type["type"], field_name)
    simple = {"null": "null", "string": "string", "int": "integer", "long": "integer", "boolean": "boolean"}
    return {"type": simple[avro_type]}


def event_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the event's JSON form, derived from the Avro schema.

    The JSON form writes timestamps as RFC 3339 strings and a null `progress` as "" (the ONAP
    spec's and Nova's legacy convention); every field is present.
    """
    schema = json.loads(event_schema_text())
    properties: dict[str, Any] = {}
    for field in schema["fields"]:
        prop = _json_type(field["type"], field["name"])
        if field["name"] == "progress":
            prop = {"anyOf": [{"type": "integer"}, {"const": ""}]}
        properties[field["name"]] = {**prop, "description": field.get("doc", "")}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:eventfed:vm-status-event",
        "title": schema["name"],
        "description": schema.get("doc", ""),
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def event_json_schema_text() -> str:
    return resources.files(__name__).joinpath(EVENT_JSON_SCHEMA_FILE).read_text(encoding="utf-8")
