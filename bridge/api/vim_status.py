"""check_vim_status: which VMs of a VIM are in any of the given states, by the latest record.

A state is a status kind (the last Nova action seen, e.g. POWER_OFF) or a Nova vm_state (e.g.
stopped), case-insensitive. Answers come from the in-memory table's indexes, never from Nova.
They come a page at a time, as GET .../vms does (see bridge.api.paging): a whole VIM in one
answer took hundreds of milliseconds and tens of MB per request. `limit` and `marker` may be in
the query string or in the body beside `states`; the query string wins.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, request

from bridge.api.context import api_context, require_loaded
from bridge.api.errors import ApiError, too_large_message
from bridge.api.paging import page_fields, page_request
from bridge.api.responses import json_with_items, known_vim
from bridge.api.vms import V1
from bridge.api.vocabulary import UnknownStatesError

V0 = "/api/eventfed/v0"
MAX_REQUESTED_STATES = 256

blueprint = Blueprint("vim_status", __name__)
blueprint.before_request(require_loaded)


@blueprint.post(f"{V1}/<cloud_owner>/<cloud_region_id>/check_vim_status")
def check_vim_status(cloud_owner: str, cloud_region_id: str) -> Response:
    return _check(f"{cloud_owner}_{cloud_region_id}")


@blueprint.post(f"{V0}/<vim_id>/check_vim_status")
def check_vim_status_v0(vim_id: str) -> Response:
    return _check(vim_id)


def _check(vim_id: str) -> Response:
    vim_id = known_vim(vim_id)
    body = _request_body()
    requested = _requested_states(body)
    vocabulary = api_context().vocabulary
    try:
        resolved = vocabulary.resolve(requested)
    except UnknownStatesError as exc:
        accepted = vocabulary.accepted()
        raise ApiError(
            400,
            f"unknown state(s) {', '.join(map(repr, exc.unknown))}; accepted (case-insensitive): "
            f"{', '.join(accepted)}",
            extra={"accepted": accepted},
        ) from None
    paging = page_request(body)
    page = api_context().read_model.table.matching_page(
        vim_id, resolved.vm_states, resolved.kinds, paging.marker, paging.limit
    )
    if page is None:
        raise ApiError(404, f"unknown VIM {vim_id}")
    head = {
        "vim_id": vim_id,
        "states": sorted(resolved.kinds) + sorted(resolved.vm_states),
        "count": len(page.summaries),
        "total": page.total,
        **page_fields(paging, page.next_marker),
    }
    return json_with_items(head, "vms", page.summaries)


def _request_body() -> dict[str, Any]:
    # get_data enforces MAX_CONTENT_LENGTH (413) before anything is parsed when the length is
    # declared; a streamed (chunked) body is silently cut at the limit instead, so one that fills
    # the limit is taken as too large rather than parsed truncated.
    raw = request.get_data(cache=False)
    if request.content_length is None and len(raw) >= current_app.config["MAX_CONTENT_LENGTH"]:
        raise ApiError(413, too_large_message())
    try:
        body: Any = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, 'the request body must be JSON: {"states": ["..."]}') from None
    if not isinstance(body, dict) or "states" not in body:
        raise ApiError(400, 'the request body must be an object with a "states" list')
    return body


def _requested_states(body: dict[str, Any]) -> list[str]:
    states = body["states"]
    if not isinstance(states, list) or not states or not all(isinstance(state, str) for state in states):
        raise ApiError(400, '"states" must be a non-empty list of strings')
    if len(states) > MAX_REQUESTED_STATES:
        raise ApiError(400, f'"states" must hold at most {MAX_REQUESTED_STATES} names')
    return states
