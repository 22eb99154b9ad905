"""Prometheus metrics: labelled by route template, never by an id; table figures at scrape time."""

from __future__ import annotations

import json

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from schemas.state import META, flow_key
from tests.unit.bridge.api.api_records import VIM_A, VIM_B

VMS_TEMPLATE = "/api/eventfed/v1/<cloud_owner>/<cloud_region_id>/vms/<instance_id>"


def samples(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").get_data(as_text=True)
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_requests_are_counted_by_route_template(client: FlaskClient) -> None:
    for instance_id in ("vm-01", "vm-02", "nope"):
        client.get(f"/api/eventfed/v1/CloudOwner/RegionOne/vms/{instance_id}")
    client.get("/no/such/thing/abc")
    client.get("/no/such/thing/def")
    client.open("/healthz", method="BREW")
    found = samples(client)
    key = "eventfed_api_requests_total"
    assert found[(key, (("method", "GET"), ("route", VMS_TEMPLATE), ("status", "200")))] == 2
    assert found[(key, (("method", "GET"), ("route", VMS_TEMPLATE), ("status", "404")))] == 1
    assert found[(key, (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 2
    assert found[(key, (("method", "other"), ("route", "unmatched"), ("status", "405")))] == 1
    assert (
        found[("eventfed_api_request_duration_seconds_count", (("method", "GET"), ("route", VMS_TEMPLATE)))]
        == 3
    )
    assert not any("vm-01" in str(labels) for _name, labels in found)


def test_table_figures(client: FlaskClient) -> None:
    client.application.extensions["eventfed"].read_model.table.apply(b"bad", b"{}")
    found = samples(client)
    assert found[("eventfed_api_state_vms", (("vim_id", VIM_A),))] == 8
    assert found[("eventfed_api_state_vms", (("vim_id", VIM_B),))] == 2
    by_state = {
        labels: value
        for (name, labels), value in found.items()
        if name == "eventfed_api_state_vms_by_vm_state"
    }
    assert by_state[(("vim_id", VIM_A), ("vm_state", "error"))] == 1
    assert by_state[(("vim_id", VIM_A), ("vm_state", "stopped"))] == 2
    assert sum(v for labels, v in by_state.items() if labels[0] == ("vim_id", VIM_A)) == 8
    assert sum(v for labels, v in by_state.items() if labels[0] == ("vim_id", VIM_B)) == 2
    assert found[("eventfed_api_state_records_total", (("outcome", "upserted"),))] == 10
    assert found[("eventfed_api_state_records_total", (("outcome", "malformed"),))] == 1
    assert found[("eventfed_api_state_caught_up", ())] == 1
    assert found[("eventfed_api_kafka_reachable", ())] == 1
    assert ("eventfed_api_state_catch_up_seconds", ()) in found


def test_fleet_vms_by_api_status_follow_the_table(client: FlaskClient) -> None:
    """VMs by Nova API status (vm_state with task_state), a VM known from its samples only under
    UNKNOWN, the worker's own flow records skipped, a tombstone taking its VM away."""
    table = client.application.extensions["eventfed"].read_model.table

    def by_status() -> dict[str, float]:
        return {
            dict(labels)["status"]: value
            for (name, labels), value in samples(client).items()
            if name == "eventfed_api_fleet_vms" and dict(labels)["vim"] == VIM_B
        }

    before = by_status()
    assert sum(before.values()) == 2
    record = {"vim_id": VIM_B, "instance_id": "vm-s", "tenant_id": "t", META: {"metering": {}}}
    table.apply(f"{VIM_B}/vm-s".encode(), json.dumps(record).encode())
    table.apply(flow_key(3), json.dumps({"fleet_flow": {"open": {}, "through": None}}).encode())
    rebooting = {"vim_id": VIM_B, "instance_id": "vm-r", "state": "active", "task_state": "rebooting"}
    table.apply(f"{VIM_B}/vm-r".encode(), json.dumps(rebooting).encode())
    after = by_status()
    assert after.get("UNKNOWN") == 1 and after.get("REBOOT") == 1 and sum(after.values()) == 4
    # Rebooted: the same VM moves from REBOOT to ACTIVE; then it is removed.
    table.apply(f"{VIM_B}/vm-r".encode(), json.dumps({**rebooting, "task_state": None}).encode())
    assert "REBOOT" not in by_status() and sum(by_status().values()) == 4
    table.apply(f"{VIM_B}/vm-r".encode(), None)
    assert sum(by_status().values()) == 3
    found = samples(client)
    assert found[("eventfed_api_state_records_total", (("outcome", "skipped"),))] == 1
    assert ("eventfed_api_fleet_last_event_timestamp_seconds", (("vim", VIM_A),)) in found
