"""Property-based checks of the WSGI app against its own OpenAPI document (no network).

schemathesis generates valid and invalid requests for every operation and checks that no answer
is a 5xx, that status codes, content types and bodies conform to the document, that valid input
is accepted and invalid input refused.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.specs.openapi.schemas import OpenApiSchema

from bridge.api import create_app
from bridge.api.read_model import InMemoryReadModel
from bridge.api.state_table import StateTable
from bridge.settings import ApiSettings
from tests.unit.bridge.api.api_records import VIM_A, fill_sample, put

OPENAPI_PATH = "/api/eventfed/v1/openapi.json"


def build_schema() -> OpenApiSchema:
    table = StateTable()
    fill_sample(table)
    # A VIM whose path parts are the kind of short strings the generator tries first, so that
    # generated requests reach existing VIMs and VMs as well as unknown ones.
    for instance_id in ("0", "a", "vm-01"):
        put(table, "0_0", instance_id)
    put(table, VIM_A, "0")
    app = create_app(ApiSettings(api_page_limit_max=50, api_max_body_bytes=4096), InMemoryReadModel(table))
    return schemathesis.openapi.from_wsgi(OPENAPI_PATH, app)


# Built at import: schemathesis generates one test per operation while pytest collects.
schema = build_schema()


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: Case) -> None:
    case.call_and_validate()
