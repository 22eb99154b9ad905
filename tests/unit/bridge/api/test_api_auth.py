"""Optional bearer and basic authentication."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import SecretStr

from bridge.api import create_app
from bridge.api.auth import Authenticator
from bridge.api.read_model import InMemoryReadModel
from bridge.api.state_table import StateTable
from bridge.settings import ApiSettings, SettingsError

V1 = "/api/eventfed/v1"
TOKEN = "s3cret-token"
PROTECTED = [
    ("GET", f"{V1}/vims"),
    ("GET", f"{V1}/CloudOwner/RegionOne/vms"),
    ("GET", f"{V1}/CloudOwner/RegionOne/vms/vm-01"),
    ("POST", f"{V1}/CloudOwner/RegionOne/check_vim_status"),
    ("POST", "/api/eventfed/v0/CloudOwner_RegionOne/check_vim_status"),
    ("GET", f"{V1}/openapi.json"),
    ("GET", "/no/such/route"),
]
OPEN = ["/healthz", "/readyz", "/metrics"]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def make_client(table: StateTable, **auth: str) -> FlaskClient:
    values: dict[str, Any] = {name: SecretStr(v) if "user" not in name else v for name, v in auth.items()}
    settings = ApiSettings(**values)
    return create_app(settings, InMemoryReadModel(table)).test_client()


def call(client: FlaskClient, method: str, path: str, authorization: str | None = None) -> int:
    headers = {"Authorization": authorization} if authorization is not None else {}
    json_body = {"states": ["active"]} if method == "POST" else None
    return client.open(path, method=method, headers=headers, json=json_body).status_code


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_bearer_token_guards_every_data_route(table: StateTable, method: str, path: str) -> None:
    client = make_client(table, api_auth_token=TOKEN)
    response = client.open(path, method=method)
    assert response.status_code == 401
    assert response.json == {"error": {"status": 401, "message": "authentication required"}}
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="eventfed"'
    for wrong in (f"Bearer {TOKEN}x", "Bearer ", f"Token {TOKEN}", TOKEN, basic("u", TOKEN), "Bearer s3crét"):
        assert call(client, method, path, wrong) == 401
    assert call(client, method, path, f"Bearer {TOKEN}") in (200, 404)
    assert call(client, method, path, f"bearer  {TOKEN} ") in (200, 404)


@pytest.mark.parametrize("path", OPEN)
def test_probes_and_metrics_stay_open(table: StateTable, path: str) -> None:
    client = make_client(table, api_auth_token=TOKEN, api_basic_user="onap", api_basic_password="pw")
    assert client.get(path).status_code == 200


def test_basic_auth(table: StateTable) -> None:
    client = make_client(table, api_basic_user="onap", api_basic_password="p:w☃")
    path = f"{V1}/vims"
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="eventfed", charset="UTF-8"'
    assert call(client, "GET", path, basic("onap", "p:w☃")) == 200
    for wrong in (
        basic("onap", "p:w"),
        basic("onapx", "p:w☃"),
        basic("", "p:w☃"),
        "Basic " + base64.b64encode(b"onap").decode(),
        "Basic !!!notbase64",
        "Basic ☃",
        f"Bearer {TOKEN}",
    ):
        response = client.get(path, headers={"Authorization": wrong})
        assert response.status_code == 401
        assert response.json == {"error": {"status": 401, "message": "invalid credentials"}}


def test_both_schemes_accepted_when_both_configured(table: StateTable) -> None:
    client = make_client(table, api_auth_token=TOKEN, api_basic_user="onap", api_basic_password="pw")
    path = f"{V1}/vims"
    response = client.get(path)
    assert (
        response.headers["WWW-Authenticate"]
        == 'Bearer realm="eventfed", Basic realm="eventfed", charset="UTF-8"'
    )
    assert call(client, "GET", path, f"Bearer {TOKEN}") == 200
    assert call(client, "GET", path, basic("onap", "pw")) == 200
    assert call(client, "GET", path, basic("onap", TOKEN)) == 401


def test_openapi_declares_the_enabled_schemes(table: StateTable) -> None:
    client = make_client(table, api_auth_token=TOKEN)
    document = client.get(f"{V1}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json
    assert document is not None
    assert document["components"]["securitySchemes"] == {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    assert document["security"] == [{"bearerAuth": []}]
    assert "401" in document["paths"][f"{V1}/vims"]["get"]["responses"]
    assert document["paths"]["/healthz"]["get"]["security"] == []
    assert "401" not in document["paths"]["/healthz"]["get"]["responses"]


@pytest.mark.parametrize(
    "settings",
    [
        ApiSettings(api_basic_user="onap"),
        ApiSettings(api_basic_password=SecretStr("pw")),
        ApiSettings(api_auth_token=SecretStr("")),
    ],
)
def test_incomplete_auth_settings_are_refused(settings: ApiSettings) -> None:
    with pytest.raises(SettingsError):
        Authenticator.from_settings(settings)


def test_disabled_by_default() -> None:
    authenticator = Authenticator.from_settings(ApiSettings())
    assert not authenticator.enabled and authenticator.is_authorized(None)
