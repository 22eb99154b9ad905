"""Bad requests get a JSON 4xx with a message; nothing gets a stack trace."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder, TestResponse, run_wsgi_app
from werkzeug.wrappers import Request

from bridge.api import create_app
from bridge.api.read_model import InMemoryReadModel
from bridge.api.vocabulary import StateVocabulary
from bridge.settings import ApiSettings
from tests.unit.bridge.api.api_records import BAD_PAGING_QUERIES

V1 = "/api/eventfed/v1"
VMS_A = f"{V1}/CloudOwner/RegionOne/vms"
CHECK_A = f"{V1}/CloudOwner/RegionOne/check_vim_status"
CHECK_A_V0 = "/api/eventfed/v0/CloudOwner_RegionOne/check_vim_status"


def assert_error(response: TestResponse, status: int, *message_parts: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.json
    assert body is not None and set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    for part in message_parts:
        assert part in error["message"]
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    return error


@pytest.mark.parametrize("path", [CHECK_A, CHECK_A_V0])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "must be JSON"),
        (b"{states: [", "must be JSON"),
        (b"\xff\xfe\xfa", "must be JSON"),
        (b"[]", 'object with a "states" list'),
        (b'"states"', 'object with a "states" list'),
        (b"{}", 'object with a "states" list'),
        (b'{"state": ["active"]}', 'object with a "states" list'),
        (b'{"states": "active"}', "non-empty list of strings"),
        (b'{"states": []}', "non-empty list of strings"),
        (b'{"states": null}', "non-empty list of strings"),
        (b'{"states": ["active", 3]}', "non-empty list of strings"),
        (b'{"states": [["active"]]}', "non-empty list of strings"),
        (b'{"states": [{"name": "active"}]}', "non-empty list of strings"),
    ],
)
def test_check_vim_status_rejects_bad_bodies(
    client: FlaskClient, path: str, body: bytes, message: str
) -> None:
    response = client.post(path, data=body, content_type="application/json")
    assert_error(response, 400, message)


@pytest.fixture
def roomy_client(read_model: InMemoryReadModel) -> FlaskClient:
    """An app whose body limit admits bodies that are bad for other reasons than size."""
    return create_app(ApiSettings(api_max_body_bytes=200_000), read_model).test_client()


def test_check_vim_status_too_many_names(roomy_client: FlaskClient) -> None:
    response = roomy_client.post(CHECK_A, json={"states": ["active"] * 257})
    assert_error(response, 400, "at most 256")


def test_check_vim_status_deeply_nested_body(roomy_client: FlaskClient) -> None:
    body = b'{"states": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    assert_error(roomy_client.post(CHECK_A, data=body, content_type="application/json"), 400, "must be JSON")


def test_check_vim_status_unknown_state_lists_accepted_values(client: FlaskClient) -> None:
    response = client.post(CHECK_A, json={"states": ["active", "RUNNING", "fubar", "fubar"]})
    error = assert_error(response, 400, "'RUNNING'", "'fubar'", "POWER_OFF", "stopped")
    vocabulary = StateVocabulary.from_catalogue()
    assert error["accepted"] == vocabulary.accepted()
    assert {"POWER_OFF", "SHUT_DOWN", "stopped", "soft-delete"} <= set(error["accepted"])


def test_check_vim_status_body_over_the_limit_is_413(client: FlaskClient) -> None:
    body = b'{"states": ["active"], "padding": "' + b"x" * 2000 + b'"}'
    response = client.post(CHECK_A, data=body, content_type="application/json")
    assert_error(response, 413, "larger than 1024 bytes")


def test_check_vim_status_streamed_body_over_the_limit_is_413(app: Flask) -> None:
    # Without a Content-Length the limit must hold while the body is read, not only from the header.
    body = b'{"states": ["active"], "padding": "' + b"x" * 4000 + b'"}'
    environ = EnvironBuilder(CHECK_A, method="POST", data=body, content_type="application/json").get_environ()
    del environ["CONTENT_LENGTH"]
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input_terminated"] = True
    app_iter, status, headers = run_wsgi_app(app, environ, buffered=True)
    response = TestResponse(app_iter, status, headers, request=Request(environ))
    assert_error(response, 413)


def test_check_vim_status_ignores_the_content_type(client: FlaskClient) -> None:
    response = client.post(CHECK_A, data=b'{"states": ["paused"]}', content_type="text/plain")
    assert response.status_code == 200 and response.json is not None and response.json["count"] == 1


@pytest.mark.parametrize(
    ("query", "message"),
    [
        *BAD_PAGING_QUERIES,
        ("state=running", "unknown state 'running'"),
        ("event=STOPPED", "unknown event 'STOPPED'"),
        ("state=", "state must be 1 to 255 characters"),
        ("state=active&state=stopped", "give state at most once"),
        ("tenant_id=", "tenant_id must be"),
        ("host=" + "h" * 300, "host must be"),
    ],
)
def test_vms_rejects_bad_query_parameters(client: FlaskClient, query: str, message: str) -> None:
    assert_error(client.get(f"{VMS_A}?{query}"), 400, message)


def test_unknown_state_filter_lists_vm_states(client: FlaskClient) -> None:
    error = assert_error(client.get(f"{VMS_A}?state=running"), 400)
    assert error["accepted"] == sorted(StateVocabulary.from_catalogue().vm_states)
    error = assert_error(client.get(f"{VMS_A}?event=running"), 400)
    assert "POWER_OFF" in error["accepted"] and "active" not in error["accepted"]


def test_unknown_path_is_json_404(client: FlaskClient) -> None:
    assert_error(client.get("/nothing/here"), 404)
    assert_error(client.get(f"{VMS_A}/vm-01/extra"), 404)
    assert_error(client.get(f"{VMS_A}/"), 404)


def test_wrong_method_is_json_405_with_allow(client: FlaskClient) -> None:
    response = client.get(CHECK_A)
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]
    response = client.delete(f"{VMS_A}/vm-01")
    assert_error(response, 405)
    assert "GET" in response.headers["Allow"]


def test_unexpected_failure_is_json_500_without_internals(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(*_args: Any) -> None:
        raise RuntimeError("secret internal detail")

    model = app.extensions["eventfed"].read_model
    monkeypatch.setattr(model.table, "record", explode)
    with caplog.at_level(logging.ERROR, logger="bridge.api.errors"):
        response = client.get(f"{VMS_A}/vm-01")
    error = assert_error(response, 500, "internal server error")
    assert "secret" not in error["message"]
    assert "secret internal detail" in caplog.text
