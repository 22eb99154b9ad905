"""The state table: the VIMs, a VIM's VMs (filtered, paged) and one VM's latest record."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from bridge.api.context import api_context, require_loaded
from bridge.api.errors import JSON_MIMETYPE, ApiError
from bridge.api.paging import page_fields, page_request, single_arg
from bridge.api.responses import json_with_items, known_vim, split_vim_id
from bridge.api.state_table import VmFilter

V1 = "/api/eventfed/v1"
# The query parameters that filter the list; links.next carries them on to the next page.
FILTER_ARGS = ("state", "event", "tenant_id", "host")

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
    state = single_arg("state")
    event = single_arg("event")
    vm_filter = VmFilter(
        state=_checked(
            state, vocabulary.vm_state(state) if state else None, "state", sorted(vocabulary.vm_states)
        ),
        status=_checked(event, vocabulary.kind(event) if event else None, "event", sorted(vocabulary.kinds)),
        tenant_id=single_arg("tenant_id"),
        host=single_arg("host"),
    )
    paging = page_request()
    page = api_context().read_model.table.page(vim_id, vm_filter, paging.marker, paging.limit)
    if page is None:  # the VIM went between the two reads; no records are ever lost by that
        raise ApiError(404, f"unknown VIM {vim_id}")
    head = {
        "vim_id": vim_id,
        "count": len(page.summaries),
        "total": page.total,
        **page_fields(paging, page.next_marker, FILTER_ARGS),
    }
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


def _checked(given: str | None, normalised: str | None, name: str, accepted: list[str]) -> str | None:
    if given is not None and normalised is None:
        raise ApiError(
            400,
            f"unknown {name} {given!r}; accepted (case-insensitive): {', '.join(accepted)}",
            extra={"accepted": accepted},
        )
    return normalised
