"""The OpenAPI document describes exactly the Flask routes, and answers conform to it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from bridge.api.openapi import openapi_document
from bridge.api.vocabulary import StateVocabulary
from bridge.settings import ApiSettings

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Flask adds these to every rule by itself; they are not part of the API's contract.
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}


def flask_operations(app: Flask) -> set[tuple[str, str]]:
    operations = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - IMPLICIT_METHODS:
            operations.add((method.lower(), path))
    return operations


def document_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_every_route_is_documented_and_every_documented_route_exists(app: Flask, client: FlaskClient) -> None:
    document = client.get("/api/eventfed/v1/openapi.json").json
    assert document is not None
    assert flask_operations(app) == document_operations(document)
    assert len(flask_operations(app)) == 9


def test_path_parameters_match_the_rule_variables(client: FlaskClient) -> None:
    document = client.get("/api/eventfed/v1/openapi.json").json
    assert document is not None
    for path, item in document["paths"].items():
        variables = set(re.findall(r"{([^}]+)}", path))
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == variables, path


def test_operation_ids_are_unique(client: FlaskClient) -> None:
    document = client.get("/api/eventfed/v1/openapi.json").json
    assert document is not None
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_enumerations_follow_the_catalogue_and_settings() -> None:
    vocabulary = StateVocabulary.from_catalogue()
    document = openapi_document(ApiSettings(api_page_limit_max=77), vocabulary, auth=[])
    states = document["components"]["schemas"]["StatusCheckRequest"]["properties"]["states"]
    assert states["items"]["enum"] == vocabulary.accepted()
    list_vms = document["paths"]["/api/eventfed/v1/{cloud_owner}/{cloud_region_id}/vms"]["get"]
    parameters = {p["name"]: p for p in list_vms["parameters"]}
    assert parameters["limit"]["schema"]["maximum"] == 77
    assert parameters["state"]["schema"]["enum"] == sorted(vocabulary.vm_states)
    assert parameters["event"]["schema"]["enum"] == sorted(vocabulary.kinds)


@pytest.mark.parametrize(
    "path",
    [
        "/api/eventfed/v1/{cloud_owner}/{cloud_region_id}/check_vim_status",
        "/api/eventfed/v0/{vim_id}/check_vim_status",
    ],
)
def test_check_vim_status_documents_its_paging(path: str) -> None:
    document = openapi_document(ApiSettings(api_page_limit_max=77), StateVocabulary.from_catalogue(), auth=[])
    operation = document["paths"][path]["post"]
    parameters = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert set(parameters) == {"limit", "marker"}
    assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 77}
    assert parameters["marker"]["schema"]["minLength"] == 1
    schemas = document["components"]["schemas"]
    body = schemas["StatusCheckRequest"]["properties"]
    assert body["limit"]["maximum"] == 77 and set(body) == {"states", "limit", "marker"}
    result = schemas["StatusCheckResult"]
    assert {"total", "limit", "next_marker", "links"} <= set(result["required"])
    assert "query string wins" in operation["description"]


def _validator(document: dict[str, Any], schema_name: str) -> Draft202012Validator:
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:openapi", resource)
    return Draft202012Validator({"$ref": f"urn:openapi#/components/schemas/{schema_name}"}, registry=registry)


@pytest.mark.parametrize(
    ("method", "path", "body", "schema_name"),
    [
        ("GET", "/api/eventfed/v1/vims", None, "VimList"),
        ("GET", "/api/eventfed/v1/CloudOwner/RegionOne/vms?limit=3", None, "VmPage"),
        ("GET", "/api/eventfed/v1/CloudOwner/RegionOne/vms/vm-07", None, "VmRecord"),
        (
            "POST",
            "/api/eventfed/v1/CloudOwner/RegionOne/check_vim_status",
            {"states": ["active"]},
            "StatusCheckResult",
        ),
        (
            "POST",
            "/api/eventfed/v1/CloudOwner/RegionOne/check_vim_status?limit=1",
            {"states": ["active"]},
            "StatusCheckResult",
        ),
        (
            "POST",
            "/api/eventfed/v0/CloudOwner_RegionOne/check_vim_status",
            {"states": ["stopped"], "limit": 1, "marker": "vm-01"},
            "StatusCheckResult",
        ),
        ("POST", "/api/eventfed/v1/CloudOwner/RegionOne/check_vim_status", {"states": ["?"]}, "Error"),
        (
            "POST",
            "/api/eventfed/v1/CloudOwner/RegionOne/check_vim_status?limit=0",
            {"states": ["active"]},
            "Error",
        ),
        ("GET", "/api/eventfed/v1/CloudOwner/RegionOne/vms?limit=1&state=active", None, "VmPage"),
        ("GET", "/api/eventfed/v1/CloudOwner/RegionOne/vms/nope", None, "Error"),
        ("GET", "/readyz", None, "Readiness"),
        ("GET", "/healthz", None, "Health"),
    ],
)
def test_answers_conform_to_their_schema(
    client: FlaskClient, method: str, path: str, body: Any, schema_name: str
) -> None:
    document = client.get("/api/eventfed/v1/openapi.json").json
    assert document is not None
    response = client.open(path, method=method, json=body)
    _validator(document, schema_name).validate(response.json)
    if schema_name in ("StatusCheckResult", "VmPage") and "limit=1" in path:
        assert response.json is not None and response.json["links"]["next"] is not None
