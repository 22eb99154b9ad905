"""The API's own description, served beside it as ONAP's multicloud plugins do."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from bridge.api.context import api_context
from bridge.api.openapi import openapi_document
from bridge.api.vms import V1

blueprint = Blueprint("docs", __name__)


@blueprint.get(f"{V1}/openapi.json")
def openapi() -> Response:
    context = api_context()
    return jsonify(
        openapi_document(context.settings, context.vocabulary, auth=context.authenticator.schemes())
    )
