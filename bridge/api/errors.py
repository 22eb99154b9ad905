"""JSON errors: every failure is `{"error": {"status": N, "message": "..."}}`, never a stack trace."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

LOG = logging.getLogger(__name__)

JSON_MIMETYPE = "application/json"


class ApiError(Exception):
    """A request the API refuses; `extra` adds fields to the error object (e.g. accepted values)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


def error_response(
    status: int,
    message: str,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = {"error": {"status": status, "message": message, **(extra or {})}}
    response = Response(json.dumps(body), status=status, mimetype=JSON_MIMETYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def too_large_message() -> str:
    return f"the request body is larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes"


def _on_api_error(error: ApiError) -> Response:
    return error_response(error.status, error.message, error.extra, error.headers)


def _on_http_exception(error: HTTPException) -> Response | HTTPException:
    status = error.code or 500
    if status < 400:
        # Routing redirects are answers, not failures.
        return error
    # Keep protocol headers such as Allow (405) and Retry-After; the body is ours.
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    message = error.description or error.name
    if isinstance(error, RequestEntityTooLarge):
        message = too_large_message()
    if status >= 500:
        LOG.error("%s %s failed: %s", request.method, request.path, error.name)
    return error_response(status, message, headers=headers)


def _on_unexpected(error: Exception) -> Response:
    # The details go to the log, never to the client.
    LOG.error("unhandled error on %s %s", request.method, request.path, exc_info=error)
    return error_response(500, "internal server error")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _on_api_error)
    app.register_error_handler(HTTPException, _on_http_exception)
    app.register_error_handler(Exception, _on_unexpected)
