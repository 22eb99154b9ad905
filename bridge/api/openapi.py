"""The OpenAPI 3.1 description of `eventfed api`, kept by hand next to the routes.

A unit test holds it to the Flask URL map in both directions, and schemathesis checks the
answers against it. Enumerations and limits come from the running configuration, so the
document states exactly what this instance accepts.
"""

from __future__ import annotations

from typing import Any

from bridge import __version__
from bridge.api.paging import DEFAULT_PAGE_LIMIT, MAX_FILTER_LENGTH, MAX_MARKER_LENGTH
from bridge.api.state_table import SUMMARY_FIELDS
from bridge.api.vim_status import MAX_REQUESTED_STATES, V0
from bridge.api.vms import V1
from bridge.api.vocabulary import StateVocabulary
from bridge.settings import ApiSettings
from schemas import event_fields

JSON = "application/json"
_NULLABLE_TEXT: dict[str, Any] = {"type": ["string", "null"]}
_ANY_SCALAR: dict[str, Any] = {"type": ["string", "integer", "number", "boolean", "null"]}
_NUMBER_OR_TEXT: dict[str, Any] = {"type": ["integer", "number", "string", "null"]}


def _json_form(avro_type: Any) -> dict[str, Any]:
    """The JSON Schema of an event field as the state record carries it (the event's JSON form:
    timestamps as ISO 8601 text, records and maps as objects)."""
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    kinds = {branch if isinstance(branch, str) else branch.get("type") for branch in branches} - {"null"}
    if kinds & {"record", "map"}:
        return {"type": ["object", "null"]}
    if kinds == {"int"}:
        return _NUMBER_OR_TEXT
    return _ANY_SCALAR


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json_response(description, _ref("Error"))


def _path_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
    }


def _query_parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_VIM_PARAMETERS = [
    _path_parameter("cloud_owner", "ONAP cloud-owner; with cloud_region_id it names the VIM"),
    _path_parameter("cloud_region_id", "ONAP cloud-region-id"),
]

_PAGING = (
    "VMs come in instance_id order (code point order), `limit` at a time. To get the next page, "
    "pass the answer's `next_marker` as `marker`, or follow `links.next`; both are null on the "
    "last page. A marker is a position in that order: it need not name a VM that still exists or "
    "still matches, so a walk never fails because the table changed under it. A walk meets every "
    "VM that matched throughout it exactly once."
)
_MARKER_DESCRIPTION = (
    "the last instance_id of the previous page (`next_marker`); the page holds the VMs after it"
)


def _limit_description(settings: ApiSettings) -> str:
    return f"page size (default {min(DEFAULT_PAGE_LIMIT, settings.api_page_limit_max)})"


def _paging_parameters(settings: ApiSettings) -> list[dict[str, Any]]:
    return [
        _query_parameter(
            "limit",
            _limit_description(settings),
            {"type": "integer", "minimum": 1, "maximum": settings.api_page_limit_max},
        ),
        _query_parameter(
            "marker",
            _MARKER_DESCRIPTION,
            {"type": "string", "minLength": 1, "maxLength": MAX_MARKER_LENGTH},
        ),
    ]


def _next_marker() -> dict[str, Any]:
    return {**_NULLABLE_TEXT, "description": "pass as `marker` to get the next page; null on the last page"}


def _page_limit(settings: ApiSettings) -> dict[str, Any]:
    return {
        "type": "integer",
        "minimum": 1,
        "maximum": settings.api_page_limit_max,
        "description": "the page size this answer used",
    }


def _schemas(settings: ApiSettings, vocabulary: StateVocabulary) -> dict[str, Any]:
    return {
        **_error_schemas(),
        **_state_schemas(),
        **_page_schemas(settings),
        **_status_check_schemas(settings, vocabulary),
        **_operation_schemas(),
    }


def _error_schemas() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["status", "message"],
                    "properties": {
                        "status": {"type": "integer", "minimum": 400, "maximum": 599},
                        "message": {"type": "string"},
                        "accepted": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "the values that would have been accepted",
                        },
                    },
                }
            },
        },
    }


def _state_schemas() -> dict[str, Any]:
    """A VM's summary and full record, and a VIM's counts."""
    summary_properties = {name: _NULLABLE_TEXT for name in SUMMARY_FIELDS}
    summary_properties["instance_id"] = {"type": "string"}
    summary_properties["vim_id"] = {"type": "string"}
    summary_properties["power_state"] = {"type": ["string", "integer", "null"]}
    summary_properties["launched_at"] = {
        **_NULLABLE_TEXT,
        "description": "when the VM was launched, written as occurred_at is (YYYY-MM-DDTHH:MM:SS.ffffffZ, "
        "UTC) whichever way Nova sent it; the VM's record keeps Nova's text",
    }
    # The fields of schemas/vm_status_event.avsc: the ONAP VM status spec's plus eventfed's own.
    record_properties = {name: _json_form(avro_type) for name, avro_type in event_fields()}
    counts = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
    return {
        "VmSummary": {
            "type": "object",
            "description": "A VM's latest state, in brief (fields the record lacks are null)",
            "required": list(SUMMARY_FIELDS),
            "properties": summary_properties,
            "additionalProperties": False,
        },
        "VmRecord": {
            "type": "object",
            "description": "A VM's latest state record as kept on the state topic: the ONAP VM status "
            "spec fields plus the fields of the last event",
            "properties": record_properties,
            "additionalProperties": True,
        },
        "Vim": {
            "type": "object",
            "required": [
                "vim_id",
                "cloud_owner",
                "cloud_region_id",
                "vm_count",
                "states",
                "statuses",
                "last_event_at",
            ],
            "properties": {
                "vim_id": {"type": "string"},
                "cloud_owner": {"type": "string"},
                "cloud_region_id": {"type": "string"},
                "vm_count": {"type": "integer", "minimum": 0},
                "states": {**counts, "description": "VMs per vm_state ('unknown' when a record has none)"},
                "statuses": {**counts, "description": "VMs per last status kind"},
                "last_event_at": {**_NULLABLE_TEXT, "description": "occurred_at of the latest event seen"},
            },
        },
        "VimList": {
            "type": "object",
            "required": ["vims"],
            "properties": {"vims": {"type": "array", "items": _ref("Vim")}},
        },
    }


def _page_schemas(settings: ApiSettings) -> dict[str, Any]:
    """A page of VMs and its links."""
    next_marker, page_limit = _next_marker(), _page_limit(settings)
    return {
        "Links": {
            "type": "object",
            "required": ["next"],
            "properties": {
                "next": {
                    **_NULLABLE_TEXT,
                    "description": "the URL of the next page, relative to this server (the same "
                    "path with limit, marker and the filters in the query string); null on the last page",
                }
            },
        },
        "VmPage": {
            "type": "object",
            "required": ["vim_id", "count", "total", "limit", "next_marker", "links", "vms"],
            "properties": {
                "vim_id": {"type": "string"},
                "count": {"type": "integer", "minimum": 0, "description": "VMs in this page"},
                "total": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "VMs that pass the filters in the whole VIM, over all pages",
                },
                "limit": page_limit,
                "next_marker": next_marker,
                "links": _ref("Links"),
                "vms": {"type": "array", "items": _ref("VmSummary")},
            },
        },
    }


def _status_check_schemas(settings: ApiSettings, vocabulary: StateVocabulary) -> dict[str, Any]:
    """check_vim_status's request and answer."""
    next_marker, page_limit = _next_marker(), _page_limit(settings)
    return {
        "StatusCheckRequest": {
            "type": "object",
            "required": ["states"],
            "properties": {
                "states": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_REQUESTED_STATES,
                    "description": "status kinds (last Nova action, e.g. POWER_OFF) or Nova vm_states "
                    "(e.g. stopped), case-insensitive",
                    "items": {"type": "string", "enum": vocabulary.accepted()},
                },
                "limit": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": settings.api_page_limit_max,
                    "description": f"{_limit_description(settings)}; the `limit` query parameter "
                    "wins over this",
                },
                "marker": {
                    "type": ["string", "null"],
                    "minLength": 1,
                    "maxLength": MAX_MARKER_LENGTH,
                    "description": f"{_MARKER_DESCRIPTION}; the `marker` query parameter wins over this",
                },
            },
        },
        "StatusCheckResult": {
            "type": "object",
            "required": ["vim_id", "states", "count", "total", "limit", "next_marker", "links", "vms"],
            "properties": {
                "vim_id": {"type": "string"},
                "states": {"type": "array", "items": {"type": "string"}},
                "count": {"type": "integer", "minimum": 0, "description": "VMs in this page"},
                "total": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "VMs that match in the whole VIM, over all pages",
                },
                "limit": page_limit,
                "next_marker": next_marker,
                "links": {
                    **_ref("Links"),
                    "description": "POST the same body to links.next for the next page",
                },
                "vms": {"type": "array", "items": _ref("VmSummary")},
            },
        },
    }


def _operation_schemas() -> dict[str, Any]:
    return {
        "Readiness": {
            "type": "object",
            "required": ["ready", "reason", "checks", "vms"],
            "properties": {
                "ready": {"type": "boolean"},
                "reason": _NULLABLE_TEXT,
                "checks": {
                    "type": "object",
                    "required": ["state_caught_up", "kafka_reachable"],
                    "properties": {
                        "state_caught_up": {"type": "boolean"},
                        "kafka_reachable": {"type": "boolean"},
                    },
                },
                "vms": {"type": "integer", "minimum": 0},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "const": "ok"}},
        },
    }


def _status_check_operation(
    settings: ApiSettings, operation_id: str, summary: str, parameters: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": f"{_PAGING} `limit` and `marker` may be given in the query string or in the "
        "body beside `states`; the query string wins where both give one, so the same body can be "
        "POSTed to `links.next`.",
        "tags": ["vim status"],
        "parameters": [*parameters, *_paging_parameters(settings)],
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("StatusCheckRequest")}}},
        "responses": {
            "200": _json_response(
                "one page of the VMs whose latest state matches, by instance_id", _ref("StatusCheckResult")
            ),
            "400": _error(
                'the body is not JSON, not {"states": [...]}, names an unknown state, or a bad limit '
                "or marker"
            ),
            "404": _error("unknown VIM"),
            "413": _error("the body is larger than the configured limit"),
            "503": _error("the state table is still loading"),
        },
    }


def _operation_paths() -> dict[str, Any]:
    """Health, readiness, metrics and this document."""
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness: the process answers",
                "tags": ["operations"],
                "security": [],
                "responses": {"200": _json_response("alive", _ref("Health"))},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: the state table caught up with the state topic and Kafka answers",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": _json_response("ready", _ref("Readiness")),
                    "503": _json_response("not ready; `reason` says why", _ref("Readiness")),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        f"{V1}/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["operations"],
                "responses": {"200": _json_response("OpenAPI 3.1", {"type": "object"})},
            }
        },
    }


def _vm_list_parameters(settings: ApiSettings, vocabulary: StateVocabulary) -> list[dict[str, Any]]:
    return [
        *_VIM_PARAMETERS,
        _query_parameter(
            "state",
            "only VMs in this Nova vm_state (case-insensitive)",
            {"type": "string", "enum": sorted(vocabulary.vm_states)},
        ),
        _query_parameter(
            "event",
            "only VMs whose last status kind is this (case-insensitive)",
            {"type": "string", "enum": sorted(vocabulary.kinds)},
        ),
        _query_parameter(
            "tenant_id",
            "only VMs of this tenant",
            {"type": "string", "minLength": 1, "maxLength": MAX_FILTER_LENGTH},
        ),
        _query_parameter(
            "host",
            "only VMs on this compute host",
            {"type": "string", "minLength": 1, "maxLength": MAX_FILTER_LENGTH},
        ),
        *_paging_parameters(settings),
    ]


def _state_paths(settings: ApiSettings, vocabulary: StateVocabulary) -> dict[str, Any]:
    """The state table: VIMs, VMs, one VM, and check_vim_status (v1 and v0)."""
    vm_list_parameters = _vm_list_parameters(settings, vocabulary)
    return {
        f"{V1}/vims": {
            "get": {
                "operationId": "listVims",
                "summary": "The VIMs in the state table, with VM counts per state and the last event time",
                "tags": ["state"],
                "responses": {
                    "200": _json_response("the VIMs, by vim_id", _ref("VimList")),
                    "503": _error("the state table is still loading"),
                },
            }
        },
        V1 + "/{cloud_owner}/{cloud_region_id}/vms": {
            "get": {
                "operationId": "listVms",
                "summary": "The VIM's VMs with their latest state, in instance_id order, a page at a time",
                "description": _PAGING,
                "tags": ["state"],
                "parameters": vm_list_parameters,
                "responses": {
                    "200": _json_response("one page", _ref("VmPage")),
                    "400": _error("a bad filter, limit or marker"),
                    "404": _error("unknown VIM"),
                    "503": _error("the state table is still loading"),
                },
            }
        },
        V1 + "/{cloud_owner}/{cloud_region_id}/vms/{instance_id}": {
            "get": {
                "operationId": "getVm",
                "summary": "One VM's latest state record",
                "tags": ["state"],
                "parameters": [*_VIM_PARAMETERS, _path_parameter("instance_id", "Nova instance uuid")],
                "responses": {
                    "200": _json_response("the record", _ref("VmRecord")),
                    "404": _error("unknown VIM or VM"),
                    "503": _error("the state table is still loading"),
                },
            }
        },
        V1 + "/{cloud_owner}/{cloud_region_id}/check_vim_status": {
            "post": _status_check_operation(
                settings,
                "checkVimStatus",
                "The VIM's VMs whose latest state is any of the given ones",
                _VIM_PARAMETERS,
            )
        },
        V0 + "/{vim_id}/check_vim_status": {
            "post": _status_check_operation(
                settings,
                "checkVimStatusV0",
                "check_vim_status with the VIM named {cloud_owner}_{cloud_region_id}",
                [_path_parameter("vim_id", "{cloud_owner}_{cloud_region_id}")],
            )
        },
    }


def openapi_document(
    settings: ApiSettings, vocabulary: StateVocabulary, *, auth: list[str]
) -> dict[str, Any]:
    """The document for this configuration; `auth` names the enabled schemes ("bearer", "basic")."""
    paths = {**_operation_paths(), **_state_paths(settings, vocabulary)}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "eventfed VM state API",
            "version": __version__,
            "description": "The latest state of every VM of every VIM, from OpenStack Nova notifications, "
            "and ONAP's check_vim_status.",
        },
        "paths": paths,
        "components": {"schemas": _schemas(settings, vocabulary)},
    }
    if auth:
        schemes = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "basic": {"type": "http", "scheme": "basic"},
        }
        document["components"]["securitySchemes"] = {f"{name}Auth": schemes[name] for name in auth}
        document["security"] = [{f"{name}Auth": []} for name in auth]
        for path_item in paths.values():
            for operation in path_item.values():
                if operation.get("security") != []:
                    operation["responses"]["401"] = _error("missing or wrong credentials")
    return document
