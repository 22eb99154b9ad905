"""Prometheus metrics: labelled by route template, never by an id; table figures at scrape time."""

from __future__ import annotations

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

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
