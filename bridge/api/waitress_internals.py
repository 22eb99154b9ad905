"""The one place eventfed touches waitress's undocumented classes: JSON for waitress's own errors.

Waitress answers some requests before the app sees them: a body over its
`max_request_body_size` (413), a malformed request line or headers (400, 431), in plain text. A
client of the API reads every error as `{"error": {"status": N, "message": "..."}}`
(bridge.api.errors), so the server's channels get an error task that writes that instead.
waitress has no public hook for it: a server builds a channel per connection from its
`channel_class`, and the channel answers a refused request with its `error_task_class`, whose
`execute` turns `request.error` (a waitress.utilities.Error) into the response.
Checked against waitress 3.0.2; `missing_internals()` says whether the installed version still
works this way (a unit test fails when an upgrade moves it), and without it waitress's plain-text
errors stay.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask

from bridge.private_api import has_source, missing

LOG = logging.getLogger(__name__)

CHECKED_VERSIONS = {"waitress": "3.0.2"}


def _checks() -> dict[str, Callable[[], bool]]:
    return {
        # A server makes each connection's channel from its channel_class ...
        "BaseWSGIServer.handle_accept uses channel_class": lambda: has_source(
            BaseWSGIServer.handle_accept, "self.channel_class("
        ),
        # ... the channel answers a refused request with its error_task_class ...
        "HTTPChannel.error_task_class": lambda: has_source(HTTPChannel, "error_task_class = ErrorTask"),
        # ... whose execute writes what request.error says, through Task's own write().
        "ErrorTask.execute reads request.error": lambda: has_source(ErrorTask.execute, "self.request.error"),
    }


def missing_internals() -> list[str]:
    return missing(_checks())


class JsonErrorTask(ErrorTask):
    """waitress's error answer, with the API's JSON error body."""

    def execute(self) -> None:
        error = self.request.error
        message = f"{error.reason}: {error.body}" if error.body else error.reason
        if error.code == 413:
            message = f"the request body is larger than the API accepts ({error.body})"
        body = json.dumps({"error": {"status": error.code, "message": message}}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def json_errors(server: Any) -> bool:
    """Makes a created waitress server answer its own errors in JSON; False (and the plain-text
    errors kept) when the installed waitress no longer works as checked."""
    absent = missing_internals()
    if absent:
        LOG.warning("this waitress lacks %s: its own errors (such as 413) stay plain text", ", ".join(absent))
        return False
    server.channel_class = JsonErrorChannel
    return True
