"""What every view needs, kept on the app: settings, read model, vocabulary, auth, metrics."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from bridge.api.auth import Authenticator
from bridge.api.errors import ApiError
from bridge.api.metrics import ApiMetrics
from bridge.api.read_model import ReadModel
from bridge.api.vocabulary import StateVocabulary
from bridge.settings import ApiSettings

EXTENSION_KEY = "eventfed"


@dataclass(frozen=True, slots=True)
class ApiContext:
    settings: ApiSettings
    read_model: ReadModel
    vocabulary: StateVocabulary
    authenticator: Authenticator
    metrics: ApiMetrics


def api_context() -> ApiContext:
    context: ApiContext = current_app.extensions[EXTENSION_KEY]
    return context


def require_loaded() -> None:
    """Refuse data requests until the start-up replay finished: a partial table would lie."""
    if not api_context().read_model.caught_up:
        raise ApiError(503, "the state table is still loading", headers={"Retry-After": "5"})
