"""The state table: the VIMs, a VIM's VMs (filtered, paged) and one VM's latest record."""

from __future__ import annotations

import re

from flask import Blueprint, Response, jsonify, request

from bridge.api.context import api_context, require_loaded
from bridge.api.errors import JSON_MIMETYPE, ApiError
from bridge.api.responses import json_with_items, known_vim, split_vim_id
from bridge.api.state_table import VmFilter

V1 = "/api/eventfed/v1"
DEFAULT_PAGE_LIMIT = 100
MAX_FILTER_LENGTH = 255
_DIGITS = re.compile(r"[0-9]{1,9}")

blueprint = Blueprint("vms", __name__)
blueprint.before_request(require_loaded)


@blueprint.get(f"{V1}/vims")
def list_vims() -> Response:
    vims = []
    for vim in api_context().read_model.table.vims():
        owner, region = split_vim_id(vim.vim_id)
        vims.append(
            {
                "vim_id": vim.vim_id,
                "cloud_owner": owner,
                "cloud_region_id": region,
                "vm_count": vim.vm_count,
                "states": dict(sorted(vim.state_counts.items())),
                "statuses": dict(sorted(vim.status_counts.items())),
                "last_event_at": vim.last_event_at,
            }
        )
    return jsonify(vims=vims)


@blueprint.get(f"{V1}/<cloud_owner>/<cloud_region_id>/vms")
def list_vms(cloud_owner: str, cloud_region_id: str) -> Response:
    vim_id = known_vim(f"{cloud_owner}_{cloud_region_id}")
    vocabulary = api_context().vocabulary
    state = _single_arg("state")
    event = _single_arg("event")
    vm_filter = VmFilter(
        state=_checked(
            state, vocabulary.vm_state(state) if state else None, "state", sorted(vocabulary.vm_states)
        ),
        status=_checked(event, vocabulary.kind(event) if event else None, "event", sorted(vocabulary.kinds)),
        tenant_id=_single_arg("tenant_id"),
        host=_single_arg("host"),
    )
    page = api_context().read_model.table.page(vim_id, vm_filter, _single_arg("marker"), _limit())
    if page is None:  # the VIM went between the two reads; no records are ever lost by that
        raise ApiError(404, f"unknown VIM {vim_id}")
    head = {"vim_id": vim_id, "count": len(page.summaries), "next_marker": page.next_marker}
    return json_with_items(head, "vms", page.summaries)


@blueprint.get(f"{V1}/<cloud_owner>/<cloud_region_id>/vms/<instance_id>")
def get_vm(cloud_owner: str, cloud_region_id: str, instance_id: str) -> Response:
    vim_id = f"{cloud_owner}_{cloud_region_id}"
    record = api_context().read_model.table.record(vim_id, instance_id)
    if record is None:
        # The hot path asks the table once; only a miss pays for telling the two 404s apart.
        known_vim(vim_id)
        raise ApiError(404, f"unknown VM {instance_id} in VIM {vim_id}")
    return Response(record, mimetype=JSON_MIMETYPE)


def _single_arg(name: str) -> str | None:
    values = request.args.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, f"give {name} at most once")
    value = values[0]
    if not value or len(value) > MAX_FILTER_LENGTH:
        raise ApiError(400, f"{name} must be 1 to {MAX_FILTER_LENGTH} characters long")
    return value


def _checked(given: str | None, normalised: str | None, name: str, accepted: list[str]) -> str | None:
    if given is not None and normalised is None:
        raise ApiError(
            400,
            f"unknown {name} {given!r}; accepted (case-insensitive): {', '.join(accepted)}",
            extra={"accepted": accepted},
        )
    return normalised


def _limit() -> int:
    maximum = api_context().settings.api_page_limit_max
    given = _single_arg("limit")
    if given is None:
        return min(DEFAULT_PAGE_LIMIT, maximum)
    if not _DIGITS.fullmatch(given) or not 1 <= int(given) <= maximum:
        raise ApiError(400, f"limit must be an integer from 1 to {maximum}")
    return int(given)
