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
