"""Liveness, readiness and metrics: open to probes and Prometheus, whatever the auth settings."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.api.context import api_context

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    # Liveness is the process answering; a broker outage must not get the pod restarted.
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    model = api_context().read_model
    readiness = model.readiness()
    body = {
        "ready": readiness.ready,
        "reason": "; ".join(readiness.reasons) or None,
        "checks": {"state_caught_up": readiness.caught_up, "kafka_reachable": readiness.kafka_reachable},
        "vms": model.table.vm_count,
    }
    return jsonify(body), 200 if readiness.ready else 503


@blueprint.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(api_context().metrics.registry), content_type=CONTENT_TYPE_LATEST)
