"""The Flask app factory of `eventfed api`."""

from __future__ import annotations

import logging

from flask import Flask, request

from bridge.api import docs, health, vim_status, vms
from bridge.api.auth import Authenticator
from bridge.api.context import EXTENSION_KEY, ApiContext, api_context
from bridge.api.errors import register_error_handlers
from bridge.api.metrics import ApiMetrics
from bridge.api.read_model import KafkaReadModel, ReadModel
from bridge.api.vocabulary import StateVocabulary
from bridge.settings import ApiSettings

LOG = logging.getLogger(__name__)

# Probes and metrics must work without credentials (kubelet, Prometheus).
OPEN_ENDPOINTS = frozenset({"health.healthz", "health.readyz", "health.metrics"})
# Waitress buffers a whole request body before the app sees it. Up to this multiple of
# api_max_body_bytes the app answers an oversized body with a JSON 413; beyond it waitress
# cuts the request off itself, so a huge upload never reaches memory.
TRANSPORT_BODY_LIMIT_FACTOR = 16


def create_app(
    settings: ApiSettings,
    read_model: ReadModel | None = None,
    *,
    vocabulary: StateVocabulary | None = None,
) -> Flask:
    """Build the API app. Without a read model, one that follows the state topic is started."""
    authenticator = Authenticator.from_settings(settings)
    if read_model is None:
        kafka_model = KafkaReadModel(settings)
        kafka_model.start()
        read_model = kafka_model
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.api_max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.compact = True  # type: ignore[attr-defined]
    metrics = ApiMetrics(read_model)
    app.extensions[EXTENSION_KEY] = ApiContext(
        settings=settings,
        read_model=read_model,
        vocabulary=vocabulary or StateVocabulary.from_catalogue(),
        authenticator=authenticator,
        metrics=metrics,
    )
    metrics.instrument(app)
    if authenticator.enabled:
        app.before_request(_authenticate)
    for blueprint in (health.blueprint, vms.blueprint, vim_status.blueprint, docs.blueprint):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    LOG.debug("api app created, authentication %s", "on" if authenticator.enabled else "off")
    return app


def _authenticate() -> None:
    if request.endpoint in OPEN_ENDPOINTS:
        return
    api_context().authenticator.require(request.headers.get("Authorization"))
