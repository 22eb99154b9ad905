"""The demo report reads in an 80- or 140-column terminal without a value cut short, and its curl
commands are single lines that run as pasted."""

from __future__ import annotations

import io
import json
import shlex

import pytest
from rich.console import Console

from bridge.api.app import create_app
from bridge.settings import ApiSettings
from streams import demo_report

VIM = "demo-owner_region-one"
# The widest values the demo's feeds carry (scripts/demo, config/subscriptions.example.yaml).
EVENTS = [
    {
        "vim_id": VIM,
        "instance_id": f"{n:08d}-0000-4000-8000-000000000000",
        "display_name": f"vnf-{n:04d}",
        "status": status,
        "phase": phase,
        "state": state,
        "state_description": task,
    }
    for n, (status, phase, state, task) in enumerate(
        [
            ("SOFT_DELETE", "end", "soft-delete", ""),
            ("POWER_OFF", "error", "active", "powering-off"),
            ("REBUILD", "start", "active", "rebuild_spawning"),
        ]
    )
]
VES_EVENTS = [
    {
        "commonEventHeader": {
            "domain": "fault",
            "eventName": "Fault_eventfed_VmActionStuck",
            "eventId": f"{VIM}/00000001-0000-4000-8000-000000000000/stuck/DELETE/1765090000000000",
            "sourceName": "demo-owner-region-one-vm-0001",
        },
        "faultFields": {"eventSeverity": "CRITICAL", "specificProblem": "DELETE without an end for 10m"},
    }
]


def _render(width: int, renderable) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("width", [80, 140])
def test_no_table_cuts_a_value_short(width):
    feed = _render(width, demo_report.feed_table("demo-closed", "eventfed.demo.closed", "json", EVENTS))
    for event in EVENTS:
        for field in ("vim_id", "state", "state_description"):
            assert event[field] in feed, (field, feed)
        assert f"{event['status']}.{event['phase']}" in feed
        assert event["instance_id"][:8] in feed
    ves = _render(width, demo_report.ves_table("demo-ves", "eventfed.demo.ves", VES_EVENTS))
    assert "CRITICAL" in ves
    state = _render(
        width,
        demo_report.state_table(
            {
                "vims": [
                    {
                        "vim_id": VIM,
                        "states": {"active": 12, "deleted": 3},
                        "last_event_at": "2026-12-07T06:50:24.428000+00:00",
                    }
                ]
            }
        ),
    )
    assert VIM in state and "2026-12-07T06:50:24.428000+00:00" in state
    for text in (feed, ves, state):
        assert "…" not in text, text
        assert max(len(line) for line in text.splitlines()) <= width


def test_curl_commands_are_single_lines_that_run_as_pasted(monkeypatch):
    api = "http://127.0.0.1:8080"
    out = io.StringIO()
    monkeypatch.setattr(demo_report, "console", Console(width=80, file=out, color_system=None))
    monkeypatch.setattr(demo_report, "get_json", lambda url: {"vims": []})
    demo_report.show_state(api)
    printed = [line.strip() for line in out.getvalue().splitlines() if line.strip().startswith("curl")]
    assert printed == demo_report.curl_commands(api)
    assert all(len(line) > 80 for line in printed[2:]), "long enough that rich would have broken them"
    app = create_app(ApiSettings())
    adapter = app.url_map.bind("127.0.0.1:8080")
    for command in printed:
        words = shlex.split(command)  # as the shell reads the pasted line
        assert words[:2] == ["curl", "-s"]
        url = words[-1]
        assert url.startswith(api + "/")
        path = url[len(api) :].split("?")[0]
        method = words[words.index("-X") + 1] if "-X" in words else "GET"
        adapter.match(path, method=method)  # raises when no route serves it
        if "-d" in words:
            assert isinstance(json.loads(words[words.index("-d") + 1]), dict)


@pytest.mark.parametrize("width", [80, 140])
def test_measurement_feed_tables_fit(width):
    from streams import ves_measurement

    header = {"startEpochMicrosec": 1_796_637_300_000_000, "lastEpochMicrosec": 1_796_637_310_000_000}
    events = [
        {
            "commonEventHeader": {
                **header,
                "eventName": ves_measurement.VM_EVENT_NAME,
                "sourceName": "vnf-0001",
            },
            "measurementFields": {
                "cpuUsageArray": [{"cpuIdentifier": "all", "percentUsage": 42.25}],
                "memoryUsageArray": [{"vmIdentifier": "x", "memoryUsed": 524288, "memoryFree": 0}],
            },
        },
        {
            "commonEventHeader": {**header, "eventName": ves_measurement.FLEET_EVENT_NAME, "sourceId": VIM},
            "measurementFields": {
                "additionalMeasurements": [
                    {"name": "vmsByStatus", "hashMap": {"ACTIVE": "18", "DELETED": "6"}},
                    {"name": "eventsByKind", "hashMap": {"CREATE": "24", "DELETE": "6"}},
                    {"name": "notificationLagSeconds", "hashMap": {"p50": "0.004", "p99": "0.02"}},
                ]
            },
        },
    ]
    vm_table, fleet_table = demo_report.measurement_tables(
        "vm-measurements-ves", "unauthenticated.VES_MEASUREMENT_OUTPUT", events
    )
    vms, fleet = _render(width, vm_table), _render(width, fleet_table)
    assert "vnf-0001" in vms and "42.2" in vms and "512" in vms
    assert demo_report.short_name("7cfd3fcc-8142-4736-afbb-f85fcec56a1b") == "7cfd3fcc..."
    assert (
        VIM in fleet and "ACTIVE=18" in fleet and "30: CREATE=24, DELETE=6" in fleet and "0.004/0.02" in fleet
    )
    # Every item whole on one line, however narrow the terminal.
    lines = fleet.splitlines()
    for item in ("CREATE=24", "DELETE=6", "ACTIVE=18", "DELETED=6"):
        assert any(item in line for line in lines), item
    for text in (vms, fleet):
        assert max(len(line) for line in text.splitlines()) <= width
