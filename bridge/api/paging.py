"""Paging shared by the routes that answer with a VIM's VMs (GET .../vms, check_vim_status).

Both page the same way. VMs come in instance_id order (code point order). `limit` is the page
size: DEFAULT_PAGE_LIMIT unless given, at most the configured `api_page_limit_max`. `marker` is
the last instance_id of the previous page (its `next_marker`), and a page holds the VMs after it.
A marker is a position in that order, not a reference to a VM: it need not name a VM that still
exists or still matches, because the VM that ended one page may be deleted or change state
before the next page is asked for, and the walk must go on then rather than fail. So a walk from
the first page until `next_marker` is null meets every VM that matched throughout exactly once;
a VM that appeared, went or changed during the walk may be met or not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import request, url_for

from bridge.api.context import api_context
from bridge.api.errors import ApiError

DEFAULT_PAGE_LIMIT = 1000
MAX_FILTER_LENGTH = 255
MAX_MARKER_LENGTH = MAX_FILTER_LENGTH
_DIGITS = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    marker: str | None


def single_arg(name: str) -> str | None:
    """A query parameter given at most once, 1 to MAX_FILTER_LENGTH characters; None if absent."""
    values = request.args.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, f"give {name} at most once")
    value = values[0]
    if not value or len(value) > MAX_FILTER_LENGTH:
        raise ApiError(400, f"{name} must be 1 to {MAX_FILTER_LENGTH} characters long")
    return value


def default_limit() -> int:
    return min(DEFAULT_PAGE_LIMIT, api_context().settings.api_page_limit_max)


def page_request(body: Mapping[str, Any] | None = None) -> PageRequest:
    """limit and marker from the query string, else from `body` (a JSON request's object).

    The query string wins where both give one, so that a client can POST the same body to the
    `links.next` URL of each page, whatever the body holds.
    """
    maximum = api_context().settings.api_page_limit_max
    limit, marker = None, None
    if body:
        limit = _body_limit(body.get("limit"), maximum)
        marker = _body_marker(body.get("marker"))
    given_limit = single_arg("limit")
    if given_limit is not None:
        if not _DIGITS.fullmatch(given_limit) or not 1 <= int(given_limit) <= maximum:
            raise ApiError(400, _limit_message(maximum))
        limit = int(given_limit)
    given_marker = single_arg("marker")
    if given_marker is not None:
        marker = given_marker
    return PageRequest(limit if limit is not None else default_limit(), marker)


def _limit_message(maximum: int) -> str:
    return f"limit must be an integer from 1 to {maximum}"


def _body_limit(value: Any, maximum: int) -> int | None:
    if value is None:
        return None
    # JSON has one number type: 100.0 is the integer 100 there, true is no number at all.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ApiError(400, _limit_message(maximum))
    return value


def _body_marker(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_MARKER_LENGTH:
        raise ApiError(400, f"marker must be a string of 1 to {MAX_MARKER_LENGTH} characters")
    return value


def page_fields(page: PageRequest, next_marker: str | None, keep_args: Iterable[str] = ()) -> dict[str, Any]:
    """The paging members of an answer: the page size used, next_marker and links.next.

    links.next is this route's path with limit, marker and the query parameters named in
    `keep_args` (the filters), relative to the server so that it holds behind a proxy that
    rewrites the host.
    """
    next_url = None
    if next_marker is not None:
        values: dict[str, Any] = dict(request.view_args or {})
        values.update((name, request.args[name]) for name in keep_args if name in request.args)
        values.update(limit=page.limit, marker=next_marker)
        next_url = url_for(str(request.endpoint), **values)
    return {"limit": page.limit, "next_marker": next_marker, "links": {"next": next_url}}
