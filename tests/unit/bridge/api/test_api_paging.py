"""Paging of check_vim_status and of GET .../vms: limit, marker, next_marker, links.next, total."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.api import create_app
from bridge.api.paging import DEFAULT_PAGE_LIMIT
from bridge.api.read_model import InMemoryReadModel
from bridge.api.state_table import StateTable, VmFilter
from bridge.settings import ApiSettings
from tests.unit.bridge.api.api_records import BAD_PAGING_QUERIES, VIM_A, put

V1 = "/api/eventfed/v1"
VMS_A = f"{V1}/CloudOwner/RegionOne/vms"
CHECK_A = f"{V1}/CloudOwner/RegionOne/check_vim_status"
CHECK_A_V0 = f"/api/eventfed/v0/{VIM_A}/check_vim_status"
CHECK_PATHS = [CHECK_A, CHECK_A_V0]


def ids(body: dict[str, Any]) -> list[str]:
    return [vm["instance_id"] for vm in body["vms"]]


def ids_of(summaries: list[bytes]) -> list[str]:
    return [json.loads(summary)["instance_id"] for summary in summaries]


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.json
    assert body["count"] == len(body["vms"])
    return body


def error_message(response: Any) -> str:
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    message: str = response.json["error"]["message"]
    return message


def walk(client: FlaskClient, path: str, body: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Every page of a check, by POSTing the same body to each page's links.next."""
    seen: list[str] = []
    pages = []
    url: str | None = path
    while url is not None:
        page = ok(client.post(url, json=body))
        pages.append(page)
        seen += ids(page)
        url = page["links"]["next"]
        if url is not None:
            assert page["next_marker"] == seen[-1]
        else:
            assert page["next_marker"] is None
    return seen, pages


# --- check_vim_status ------------------------------------------------------------------------


@pytest.mark.parametrize("path", CHECK_PATHS)
def test_first_page_has_the_default_limit_and_says_it_is_the_last(client: FlaskClient, path: str) -> None:
    body = ok(client.post(path, json={"states": ["active", "stopped"]}))
    # The unit tests' settings allow at most 50 a page, below the default.
    assert body["limit"] == min(DEFAULT_PAGE_LIMIT, 50) == 50
    assert ids(body) == ["vm-01", "vm-02", "vm-03", "vm-05"]
    assert body["count"] == 4 and body["total"] == 4
    assert body["next_marker"] is None and body["links"] == {"next": None}
    assert list(body) == [
        "vim_id", "states", "count", "total", "limit", "next_marker", "links", "vms",
    ]  # fmt: skip


@pytest.mark.parametrize("path", CHECK_PATHS)
def test_walking_the_pages_meets_every_match_once_in_order(settings: ApiSettings, path: str) -> None:
    model = InMemoryReadModel()
    for number in range(23):
        put(model.table, VIM_A, f"vm-{number:03d}", state="stopped" if number % 3 else "active")
    client = create_app(settings, model).test_client()
    seen, pages = walk(client, f"{path}?limit=4", {"states": ["stopped"]})
    expected = [f"vm-{n:03d}" for n in range(23) if n % 3]
    assert seen == expected
    assert [page["count"] for page in pages] == [4, 4, 4, 3]
    assert {page["total"] for page in pages} == {15}
    assert {page["limit"] for page in pages} == {4}


def test_links_next_is_the_same_route_with_limit_and_marker(client: FlaskClient) -> None:
    body = ok(client.post(f"{CHECK_A}?limit=2", json={"states": ["stopped", "POWER_OFF"]}))
    assert ids(body) == ["vm-02", "vm-03"] and body["total"] == 3
    assert body["links"]["next"] == f"{CHECK_A}?limit=2&marker=vm-03"
    body = ok(client.post(f"{CHECK_A_V0}?limit=2", json={"states": ["stopped", "POWER_OFF"]}))
    assert body["links"]["next"] == f"{CHECK_A_V0}?limit=2&marker=vm-03"


def test_links_next_quotes_the_marker(settings: ApiSettings) -> None:
    model = InMemoryReadModel()
    for instance_id in ("a&b=c", "a b#?", "z\u00e9"):
        put(model.table, VIM_A, instance_id)
    client = create_app(settings, model).test_client()
    seen, _ = walk(client, f"{CHECK_A}?limit=1", {"states": ["active"]})
    assert seen == ["a b#?", "a&b=c", "z\u00e9"]
    body = ok(client.post(f"{CHECK_A}?limit=1", json={"states": ["active"]}))
    query = parse_qs(urlsplit(body["links"]["next"]).query)
    assert query == {"limit": ["1"], "marker": ["a b#?"]}


def test_a_full_last_page_is_the_last(client: FlaskClient) -> None:
    body = ok(client.post(f"{CHECK_A}?limit=3", json={"states": ["stopped", "POWER_OFF"]}))
    assert ids(body) == ["vm-02", "vm-03", "vm-05"] and body["next_marker"] is None


def test_limit_and_marker_in_the_body(client: FlaskClient) -> None:
    body = ok(client.post(CHECK_A, json={"states": ["active", "stopped"], "limit": 2}))
    assert ids(body) == ["vm-01", "vm-02"] and body["limit"] == 2 and body["next_marker"] == "vm-02"
    body = ok(client.post(CHECK_A, json={"states": ["active", "stopped"], "limit": 2, "marker": "vm-02"}))
    assert ids(body) == ["vm-03", "vm-05"]
    # JSON has one number type: 2.0 is the integer 2. null means "not given".
    body = ok(client.post(CHECK_A, json={"states": ["active"], "limit": 2.0, "marker": None}))
    assert ids(body) == ["vm-01", "vm-05"] and body["limit"] == 2
    body = ok(client.post(CHECK_A, json={"states": ["active"], "limit": None}))
    assert body["limit"] == 50


def test_the_query_string_wins_over_the_body(client: FlaskClient) -> None:
    states = ["active", "stopped"]
    body = ok(
        client.post(f"{CHECK_A}?limit=1&marker=vm-02", json={"states": states, "limit": 3, "marker": "x"})
    )
    assert ids(body) == ["vm-03"] and body["limit"] == 1
    # So a client that keeps its first body (marker and all) can follow links.next.
    first = {"states": states, "limit": 3, "marker": "vm-01"}
    seen, _ = walk(client, CHECK_A, first)
    assert seen == ["vm-02", "vm-03", "vm-05"]


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("vm-02", ["vm-03", "vm-05"]),  # exclusive: the page starts after the marker
        ("vm-04", ["vm-05"]),  # a VM that exists but does not match
        ("vm-02x", ["vm-03", "vm-05"]),  # no such VM: a position between vm-02 and vm-03
        ("a", ["vm-01", "vm-02", "vm-03", "vm-05"]),  # before every id
        ("vm-05", []),
        ("zzz", []),  # after every id
    ],
)
def test_a_marker_is_a_position_in_instance_id_order(
    client: FlaskClient, marker: str, expected: list[str]
) -> None:
    body = ok(client.post(f"{CHECK_A}?marker={marker}", json={"states": ["active", "stopped"]}))
    assert ids(body) == expected
    assert body["total"] == 4 and body["next_marker"] is None


def test_a_walk_goes_on_when_the_marker_vm_changes_or_goes(settings: ApiSettings) -> None:
    model = InMemoryReadModel()
    for number in range(10):
        put(model.table, VIM_A, f"vm-{number}", state="stopped", status="POWER_OFF")
    client = create_app(settings, model).test_client()
    first = ok(client.post(f"{CHECK_A}?limit=3", json={"states": ["POWER_OFF"]}))
    assert first["next_marker"] == "vm-2"
    put(model.table, VIM_A, "vm-2", state="active", status="POWER_ON")  # no longer matches
    second = ok(client.post(first["links"]["next"], json={"states": ["POWER_OFF"]}))
    assert ids(second) == ["vm-3", "vm-4", "vm-5"] and second["total"] == 9
    model.table.apply(f"{VIM_A}/vm-5".encode(), None)  # deleted
    third = ok(client.post(second["links"]["next"], json={"states": ["POWER_OFF"]}))
    assert ids(third) == ["vm-6", "vm-7", "vm-8"] and third["total"] == 8


def test_total_counts_a_vm_that_matches_twice_once(client: FlaskClient) -> None:
    # vm-02 is stopped and POWER_OFF: it matches by both names.
    body = ok(client.post(f"{CHECK_A}?limit=1", json={"states": ["stopped", "POWER_OFF", "paused"]}))
    assert body["total"] == 4 and ids(body) == ["vm-02"]
    seen, _ = walk(client, f"{CHECK_A}?limit=1", {"states": ["stopped", "POWER_OFF", "paused"]})
    assert seen == ["vm-02", "vm-03", "vm-04", "vm-05"]


def test_nothing_matches(client: FlaskClient) -> None:
    body = ok(client.post(CHECK_A, json={"states": ["REBOOT"]}))
    assert body["vms"] == [] and body["total"] == 0 and body["next_marker"] is None


def test_a_few_matches_among_many(settings: ApiSettings) -> None:
    model = InMemoryReadModel()
    for number in range(3000):
        if number % 500 == 7:
            put(model.table, VIM_A, f"vm-{number:05d}", state="paused", status="PAUSE")
        elif number % 700 == 3:
            put(model.table, VIM_A, f"vm-{number:05d}", state="stopped", status="POWER_OFF")
        else:
            put(model.table, VIM_A, f"vm-{number:05d}")
    client = create_app(settings, model).test_client()
    states = ["PAUSE", "paused", "stopped"]
    expected = [f"vm-{n:05d}" for n in range(3000) if n % 500 == 7 or n % 700 == 3]
    seen, pages = walk(client, f"{CHECK_A}?limit=4", {"states": states})
    assert seen == expected and len(pages) == 3
    assert {page["total"] for page in pages} == {len(expected)}


@pytest.mark.parametrize("path", CHECK_PATHS)
@pytest.mark.parametrize(
    ("query", "message"),
    BAD_PAGING_QUERIES,
)
def test_bad_query_paging_is_400(client: FlaskClient, path: str, query: str, message: str) -> None:
    assert message in error_message(client.post(f"{path}?{query}", json={"states": ["active"]}))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"limit": 0}, "limit must be an integer from 1 to 50"),
        ({"limit": 51}, "limit must be an integer from 1 to 50"),
        ({"limit": 1.5}, "limit must be"),
        ({"limit": "10"}, "limit must be"),
        ({"limit": True}, "limit must be"),
        ({"limit": [10]}, "limit must be"),
        ({"limit": 10**30}, "limit must be"),
        ({"marker": ""}, "marker must be a string of 1 to 255 characters"),
        ({"marker": "x" * 256}, "marker must be a string"),
        ({"marker": 7}, "marker must be a string"),
        ({"marker": ["vm-01"]}, "marker must be a string"),
    ],
)
def test_bad_body_paging_is_400(client: FlaskClient, fields: dict[str, Any], message: str) -> None:
    assert message in error_message(client.post(CHECK_A, json={"states": ["active"], **fields}))


def test_a_body_limit_that_is_not_json_number_is_400(client: FlaskClient) -> None:
    for raw in (b'{"states": ["active"], "limit": NaN}', b'{"states": ["active"], "limit": Infinity}'):
        assert "limit must be" in error_message(client.post(CHECK_A, data=raw))


def test_unknown_states_are_reported_before_paging(client: FlaskClient) -> None:
    assert "unknown state" in error_message(client.post(f"{CHECK_A}?limit=0", json={"states": ["nope"]}))


def _dispatch(app: Flask, path: str, **kwargs: Any) -> Any:
    # The test client always reads an answer as an iterator; the view's own Response tells.
    with app.test_request_context(path, method="POST", **kwargs):
        return app.full_dispatch_request()


def test_large_pages_are_streamed_and_default_pages_are_not() -> None:
    model = InMemoryReadModel()
    for number in range(2500):
        put(model.table, VIM_A, f"vm-{number:05d}", state="stopped" if number % 2 else "active")
    app = create_app(ApiSettings(api_page_limit_max=5000), model)
    states = {"states": ["active", "stopped"]}
    large = _dispatch(app, CHECK_A, json=states, query_string={"limit": "2500"})
    assert large.is_streamed
    body = json.loads(b"".join(large.response))
    assert body["count"] == 2500 and body["next_marker"] is None
    assert ids(body) == [f"vm-{number:05d}" for number in range(2500)]
    default = _dispatch(app, CHECK_A, json=states)
    assert not default.is_streamed
    body = json.loads(default.get_data())
    assert body["count"] == DEFAULT_PAGE_LIMIT and body["total"] == 2500


# --- GET .../vms: the same paging --------------------------------------------------------------


def test_vms_pages_carry_limit_and_links(client: FlaskClient) -> None:
    body = ok(client.get(VMS_A, query_string={"limit": "3", "state": "STOPPED"}))
    assert ids(body) == ["vm-02", "vm-03"] and body["limit"] == 3 and body["links"] == {"next": None}
    body = ok(client.get(VMS_A, query_string={"limit": "3"}))
    assert body["next_marker"] == "vm-03"
    assert body["links"]["next"] == f"{VMS_A}?limit=3&marker=vm-03"
    assert ok(client.get(VMS_A))["limit"] == 50


def test_vms_links_next_keeps_the_filters(client: FlaskClient) -> None:
    seen: list[str] = []
    url: str | None = f"{VMS_A}?host=compute-2&limit=1&marker=a&ignored=1"
    while url is not None:
        body = ok(client.get(url))
        seen += ids(body)
        url = body["links"]["next"]
        if url is not None:
            assert parse_qs(urlsplit(url).query) == {
                "host": ["compute-2"],
                "limit": ["1"],
                "marker": [seen[-1]],
            }
    assert seen == ["vm-03", "vm-08"]


def test_both_routes_page_alike(client: FlaskClient) -> None:
    """The same VMs, pages and markers from a list filtered by one state and a check of it."""
    listed: list[list[str]] = []
    marker = None
    while True:
        body = ok(
            client.get(
                VMS_A,
                query_string={"limit": "1", "event": "POWER_OFF", **({"marker": marker} if marker else {})},
            )
        )
        listed.append(ids(body))
        marker = body["next_marker"]
        if marker is None:
            break
    _, pages = walk(client, f"{CHECK_A}?limit=1", {"states": ["POWER_OFF"]})
    assert [ids(page) for page in pages] == listed == [["vm-02"], ["vm-05"]]


# --- the table against a plain model ---------------------------------------------------------

_IDS = st.sampled_from([f"v{n:02d}" for n in range(24)])
_STATES = st.sampled_from(["active", "stopped", "paused"])
_KINDS = st.sampled_from(["CREATE", "POWER_OFF", "PAUSE"])
_OPERATIONS = st.lists(st.tuples(_IDS, st.one_of(st.none(), st.tuples(_STATES, _KINDS))), max_size=60)


@settings(max_examples=200, deadline=None)
@given(
    operations=_OPERATIONS,
    vm_states=st.frozensets(_STATES),
    kinds=st.frozensets(_KINDS),
    marker=st.one_of(st.none(), _IDS, st.sampled_from(["", "v05x", "w"])),
    limit=st.integers(1, 30),
)
def test_matching_pages_agree_with_a_plain_dict(
    operations: list[tuple[str, tuple[str, str] | None]],
    vm_states: frozenset[str],
    kinds: frozenset[str],
    marker: str | None,
    limit: int,
) -> None:
    table = StateTable()
    model: dict[str, tuple[str, str]] = {}
    for instance_id, value in operations:
        if value is None:
            table.apply(f"{VIM_A}/{instance_id}".encode(), None)
            model.pop(instance_id, None)
        else:
            put(table, VIM_A, instance_id, state=value[0], status=value[1])
            model[instance_id] = value
    put(table, VIM_A, "zz-anchor", state="error", status="DELETE")  # the VIM always exists
    model["zz-anchor"] = ("error", "DELETE")
    matching = sorted(i for i, (s, k) in model.items() if s in vm_states or k in kinds)
    after = [i for i in matching if marker is None or i > marker]
    page = table.matching_page(VIM_A, vm_states, kinds, marker, limit)
    assert page is not None
    assert page.total == len(matching)
    assert ids_of(page.summaries) == after[:limit]
    assert page.next_marker == (after[limit - 1] if len(after) > limit else None)
    # The filtered list pages the same way over the same order.
    for vm_filter in (
        [VmFilter(state=state) for state in vm_states]
        + [VmFilter(status=kind) for kind in kinds]
        + [VmFilter(state=state, status=kind) for state in vm_states for kind in kinds]
    ):
        listed = table.page(VIM_A, vm_filter, marker, limit)
        assert listed is not None
        expected = [
            i
            for i in sorted(model)
            if (marker is None or i > marker)
            and vm_filter.state in (None, model[i][0])
            and vm_filter.status in (None, model[i][1])
        ]
        assert ids_of(listed.summaries) == expected[:limit]
        assert listed.next_marker == (expected[limit - 1] if len(expected) > limit else None)


@pytest.mark.parametrize(
    ("query", "total"),
    [
        ({}, 8),
        ({"state": "stopped"}, 2),
        ({"event": "POWER_OFF"}, 2),
        ({"state": "stopped", "event": "POWER_OFF"}, 1),
        ({"host": "compute-2"}, 2),
        ({"state": "nothing-like-it"}, None),
    ],
)
def test_vms_pages_say_how_many_match_over_all_pages(
    client: FlaskClient, query: dict, total: int | None
) -> None:
    response = client.get(VMS_A, query_string={**query, "limit": "1"})
    if total is None:
        assert response.status_code == 400
        return
    first = ok(response)
    assert first["total"] == total
    assert list(first)[:3] == ["vim_id", "count", "total"]
    if first["next_marker"] is not None:
        assert ok(client.get(first["links"]["next"]))["total"] == total
