"""Every route of the API over the in-memory table."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from bridge.api import create_app
from bridge.api.read_model import InMemoryReadModel
from bridge.settings import ApiSettings
from tests.unit.bridge.api.api_records import VIM_A, VIM_B, put, state_record

V1 = "/api/eventfed/v1"
VMS_A = f"{V1}/CloudOwner/RegionOne/vms"
CHECK_A = f"{V1}/CloudOwner/RegionOne/check_vim_status"
CHECK_A_V0 = f"/api/eventfed/v0/{VIM_A}/check_vim_status"


def ids(body: dict[str, Any]) -> list[str]:
    return [vm["instance_id"] for vm in body["vms"]]


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_when_ready(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {
        "ready": True,
        "reason": None,
        "checks": {"state_caught_up": True, "kafka_reachable": True},
        "vms": 10,
    }


@pytest.mark.parametrize(
    ("caught_up", "reachable", "reason"),
    [
        (False, True, "the state table is still loading"),
        (True, False, "Kafka is not reachable"),
        (False, False, "the state table is still loading; Kafka is not reachable"),
    ],
)
def test_readyz_when_not_ready(settings: ApiSettings, caught_up: bool, reachable: bool, reason: str) -> None:
    model = InMemoryReadModel(caught_up=caught_up, reachable=reachable)
    response = create_app(settings, model).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json is not None and response.json["ready"] is False
    assert response.json["reason"] == reason
    assert response.json["checks"] == {"state_caught_up": caught_up, "kafka_reachable": reachable}


def test_data_routes_wait_for_the_table(settings: ApiSettings) -> None:
    client = create_app(settings, InMemoryReadModel(caught_up=False)).test_client()
    for response in (
        client.get(f"{V1}/vims"),
        client.get(VMS_A),
        client.get(f"{VMS_A}/vm-01"),
        client.post(CHECK_A, json={"states": ["active"]}),
        client.post(CHECK_A_V0, json={"states": ["active"]}),
    ):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.json == {"error": {"status": 503, "message": "the state table is still loading"}}
    assert client.get("/healthz").status_code == 200


def test_vims(client: FlaskClient) -> None:
    response = client.get(f"{V1}/vims")
    assert response.status_code == 200
    vims = response.json["vims"]  # type: ignore[index]
    assert [vim["vim_id"] for vim in vims] == [VIM_A, VIM_B]
    vim_a = vims[0]
    assert vim_a["cloud_owner"] == "CloudOwner" and vim_a["cloud_region_id"] == "RegionOne"
    assert vim_a["vm_count"] == 8
    assert vim_a["states"] == {
        "active": 2, "deleted": 1, "error": 1, "paused": 1, "soft-delete": 1, "stopped": 2,
    }  # fmt: skip
    assert vim_a["statuses"]["POWER_OFF"] == 2
    assert vim_a["last_event_at"] == "2024-05-02T08:00:00+00:00"


def test_vims_when_empty(settings: ApiSettings) -> None:
    response = create_app(settings, InMemoryReadModel()).test_client().get(f"{V1}/vims")
    assert response.status_code == 200 and response.json == {"vims": []}


def test_vms_first_page_uses_the_default_limit(client: FlaskClient) -> None:
    response = client.get(VMS_A)
    assert response.status_code == 200
    body = response.json
    assert body is not None
    assert body["vim_id"] == VIM_A and body["count"] == 8 and body["next_marker"] is None
    assert ids(body) == [f"vm-0{i}" for i in range(1, 9)]
    first = body["vms"][0]
    assert set(first) == {
        "instance_id", "vim_id", "display_name", "state", "state_description", "status", "phase",
        "launched_at", "occurred_at", "updated_at", "tenant_id", "host", "power_state", "task_state",
        "event_type",
    }  # fmt: skip
    assert first["display_name"] == "vm-vm-01" and first["status"] == "CREATE"


def test_vms_paging_walks_every_vm_once(client: FlaskClient) -> None:
    seen: list[str] = []
    marker = None
    pages = 0
    while True:
        query = {"limit": "3", **({"marker": marker} if marker else {})}
        body = client.get(VMS_A, query_string=query).json
        assert body is not None
        seen += ids(body)
        pages += 1
        marker = body["next_marker"]
        if marker is None:
            break
        assert marker == seen[-1]
    assert pages == 3 and seen == [f"vm-0{i}" for i in range(1, 9)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"state": "stopped"}, ["vm-02", "vm-03"]),
        ({"state": "STOPPED"}, ["vm-02", "vm-03"]),
        ({"state": "Soft-Delete"}, ["vm-08"]),
        ({"event": "power_off"}, ["vm-02", "vm-05"]),
        ({"event": "POWER_OFF", "state": "active"}, ["vm-05"]),
        ({"tenant_id": "tenant-2"}, ["vm-04", "vm-08"]),
        ({"host": "compute-2"}, ["vm-03", "vm-08"]),
        ({"host": "compute-2", "tenant_id": "tenant-2"}, ["vm-08"]),
        ({"tenant_id": "nobody"}, []),
        ({"state": "building"}, []),
        ({"marker": "vm-06"}, ["vm-07", "vm-08"]),
        ({"marker": "vm-05x", "limit": "1"}, ["vm-06"]),
    ],
)
def test_vms_filters(client: FlaskClient, query: dict[str, str], expected: list[str]) -> None:
    response = client.get(VMS_A, query_string=query)
    assert response.status_code == 200
    assert ids(response.json) == expected  # type: ignore[arg-type]


def test_vms_of_the_other_vim(client: FlaskClient) -> None:
    body = client.get(f"{V1}/CloudOwner/RegionTwo/vms").json
    assert body is not None and ids(body) == ["vm-b1", "vm-b2"]


def test_one_vm_full_record(client: FlaskClient) -> None:
    response = client.get(f"{VMS_A}/vm-07")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == state_record(
        VIM_A, "vm-07", state="error", status="CREATE", phase="error", fault={"message": "no host"}
    )


def test_unknown_vm_and_unknown_vim_are_404(client: FlaskClient) -> None:
    response = client.get(f"{VMS_A}/nope")
    assert response.status_code == 404
    assert response.json == {"error": {"status": 404, "message": f"unknown VM nope in VIM {VIM_A}"}}
    for response in (
        client.get(f"{V1}/Nobody/Nowhere/vms"),
        client.get(f"{V1}/Nobody/Nowhere/vms/vm-01"),
        client.post(f"{V1}/Nobody/Nowhere/check_vim_status", json={"states": ["active"]}),
        client.post("/api/eventfed/v0/Nobody_Nowhere/check_vim_status", json={"states": ["active"]}),
        client.post("/api/eventfed/v0/no-underscore/check_vim_status", json={"states": ["active"]}),
    ):
        assert response.status_code == 404
        assert response.json is not None and response.json["error"]["message"].startswith("unknown VIM")


@pytest.mark.parametrize("path", [CHECK_A, CHECK_A_V0])
def test_check_vim_status_by_kind_and_vm_state(client: FlaskClient, path: str) -> None:
    response = client.post(path, json={"states": ["POWER_OFF", "stopped"]})
    assert response.status_code == 200
    body = response.json
    assert body is not None
    assert body["vim_id"] == VIM_A
    assert body["states"] == ["POWER_OFF", "stopped"]
    assert body["count"] == 3 and ids(body) == ["vm-02", "vm-03", "vm-05"]
    vm = body["vms"][0]
    for field in ("instance_id", "display_name", "state", "state_description", "launched_at", "status"):
        assert field in vm
    assert vm["occurred_at"] == "2024-05-01T10:00:00+00:00"
    assert vm["status"] == "POWER_OFF" and vm["state"] == "stopped"


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (["power_off"], ["vm-02", "vm-05"]),
        (["Stopped"], ["vm-02", "vm-03"]),
        (["SOFT-DELETE", "delete"], ["vm-06", "vm-08"]),
        (["soft_delete"], ["vm-08"]),
        # "error" is a vm_state; a name that is also a kind would match both.
        (["error"], ["vm-07"]),
        (["active", "active"], ["vm-01", "vm-05"]),
        (["REBOOT"], []),
    ],
)
def test_check_vim_status_names_are_case_insensitive(
    client: FlaskClient, states: list[str], expected: list[str]
) -> None:
    response = client.post(CHECK_A, json={"states": states})
    assert response.status_code == 200
    assert ids(response.json) == expected  # type: ignore[arg-type]


def test_check_vim_status_sees_updates(settings: ApiSettings) -> None:
    model = InMemoryReadModel()
    client = create_app(settings, model).test_client()
    put(model.table, VIM_A, "vm-1", state="active", status="POWER_ON")
    assert ids(client.post(CHECK_A, json={"states": ["POWER_OFF"]}).json) == []  # type: ignore[arg-type]
    put(model.table, VIM_A, "vm-1", state="stopped", status="POWER_OFF")
    assert ids(client.post(CHECK_A, json={"states": ["POWER_OFF"]}).json) == ["vm-1"]  # type: ignore[arg-type]
    model.table.apply(f"{VIM_A}/vm-1".encode(), None)
    assert ids(client.post(CHECK_A, json={"states": ["POWER_OFF"]}).json) == []  # type: ignore[arg-type]


def test_a_vm_known_from_its_samples_only_is_listed_without_a_state(settings: ApiSettings) -> None:
    """No vm_state is made up for it: listed with state null, counted under "unknown" in /vims,
    matched by no state in check_vim_status until its first event or poll."""
    model = InMemoryReadModel()
    client = create_app(settings, model).test_client()
    put(model.table, VIM_A, "vm-1", state="active", status="POWER_ON")
    record = {"vim_id": VIM_A, "instance_id": "vm-s", "tenant_id": "t-1", "host": "h-1", "eventfed": {}}
    model.table.apply(f"{VIM_A}/vm-s".encode(), json.dumps(record).encode())
    body = client.get(VMS_A).json
    assert body is not None and ids(body) == ["vm-1", "vm-s"]
    (listed,) = [vm for vm in body["vms"] if vm["instance_id"] == "vm-s"]
    assert listed["state"] is None and listed["status"] is None and listed["tenant_id"] == "t-1"
    (vim,) = client.get(f"{V1}/vims").json["vims"]  # type: ignore[index]
    assert vim["vm_count"] == 2 and vim["states"] == {"active": 1, "unknown": 1}
    every = sorted(model.table.vims()[0].state_counts)
    assert every == ["active", "unknown"]
    answer = client.post(CHECK_A, json={"states": ["active", "stopped", "POWER_ON"]}).json
    assert ids(answer) == ["vm-1"]  # type: ignore[arg-type]
    assert client.get(f"{VMS_A}?tenant_id=t-1").json["total"] == 1  # type: ignore[index]


def test_openapi_document_is_served(client: FlaskClient) -> None:
    response = client.get(f"{V1}/openapi.json")
    assert response.status_code == 200
    document = response.json
    assert document is not None and document["openapi"].startswith("3.1")
    assert "securitySchemes" not in document["components"]


def test_metrics_is_prometheus_text(client: FlaskClient) -> None:
    client.get(f"{VMS_A}/vm-01")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "eventfed_api_requests_total" in response.get_data(as_text=True)


def test_large_answers_are_streamed() -> None:
    model = InMemoryReadModel()
    for number in range(2500):
        put(model.table, VIM_A, f"vm-{number:05d}", state="stopped" if number % 2 else "active")
    # Answers come a page at a time now; a page this large needs a limit and a maximum to match.
    client = create_app(ApiSettings(api_page_limit_max=5000), model).test_client()
    response = client.post(f"{CHECK_A}?limit=2500", json={"states": ["active", "stopped"]})
    assert response.status_code == 200
    assert response.is_streamed
    body = response.json
    assert body is not None and body["count"] == 2500
    assert ids(body) == [f"vm-{number:05d}" for number in range(2500)]


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("2018-03-07T05:59:46.000000", "2018-03-07T05:59:46.000000Z"),  # legacy
        ("2018-03-07 05:59:46", "2018-03-07T05:59:46.000000Z"),  # legacy, str(utcnow())
        ("2018-03-07T05:59:46Z", "2018-03-07T05:59:46.000000Z"),  # versioned
        ("", None),
        (None, None),
    ],
)
def test_a_summary_s_launched_at_is_in_one_format_and_the_record_keeps_nova_s(settings, sent, shown) -> None:
    from bridge.api.app import create_app
    from bridge.api.read_model import InMemoryReadModel
    from tests.unit.bridge.api.api_records import VIM_A, put

    model = InMemoryReadModel()
    put(model.table, VIM_A, "vm-1", launched_at=sent)
    client = create_app(settings, model).test_client()
    summary = client.get("/api/eventfed/v1/CloudOwner/RegionOne/vms").json["vms"][0]
    assert summary["launched_at"] == shown
    record = client.get("/api/eventfed/v1/CloudOwner/RegionOne/vms/vm-1").json
    assert record["launched_at"] == sent
