"""waitress's own refusals (a body over its limit, a malformed request) are JSON like the app's."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from bridge.api import waitress_internals
from bridge.api.app import TRANSPORT_BODY_LIMIT_FACTOR, create_app
from bridge.api.read_model import InMemoryReadModel
from bridge.api.server import build_server
from bridge.settings import ApiSettings
from tests.support.processes import free_port
from tests.unit.bridge.api.api_records import fill_sample


@pytest.fixture
def served() -> Iterator[tuple[int, ApiSettings]]:
    settings = ApiSettings(api_host="127.0.0.1", api_port=free_port(), api_threads=2)
    model = InMemoryReadModel()
    fill_sample(model.table)
    server = build_server(create_app(settings, model), settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield settings.api_port, settings
    finally:
        server.close()
        thread.join(5)


def test_the_installed_waitress_still_has_what_the_json_errors_rely_on():
    assert waitress_internals.missing_internals() == []


def test_a_body_over_waitress_s_limit_gets_a_json_413(served):
    port, settings = served
    size = settings.api_max_body_bytes * TRANSPORT_BODY_LIMIT_FACTOR + 100_000  # about 1.1 MB
    head = (
        "POST /api/eventfed/v1/CloudOwner/RegionOne/check_vim_status HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        # waitress may answer and close before the whole body is sent: what counts is its answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"x" * size)
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 413
        assert response.getheader("Content-Type") == "application/json"
        body = json.loads(response.read())
    assert body["error"]["status"] == 413
    assert body["error"]["message"].startswith("the request body is larger than the API accepts")


def test_a_body_over_the_app_s_limit_still_gets_the_app_s_413(served):
    port, settings = served
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST",
            "/api/eventfed/v1/CloudOwner/RegionOne/check_vim_status",
            body=b"x" * (settings.api_max_body_bytes + 1),
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["message"] == (
            f"the request body is larger than {settings.api_max_body_bytes} bytes"
        )
    finally:
        connection.close()


def test_a_malformed_request_gets_a_json_400(served):
    port, _ = served
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["error"]["status"] == 400
