"""Fixtures for the API's unit tests: state records, a filled in-memory table, the app."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.api import create_app
from bridge.api.read_model import InMemoryReadModel
from bridge.api.state_table import StateTable
from bridge.settings import ApiSettings
from tests.unit.bridge.api.api_records import fill_sample


@pytest.fixture
def table() -> StateTable:
    table = StateTable()
    fill_sample(table)
    return table


@pytest.fixture
def read_model(table: StateTable) -> InMemoryReadModel:
    return InMemoryReadModel(table)


@pytest.fixture
def settings() -> ApiSettings:
    return ApiSettings(api_page_limit_max=50, api_max_body_bytes=1024)


@pytest.fixture
def app(settings: ApiSettings, read_model: InMemoryReadModel) -> Flask:
    return create_app(settings, read_model)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
