"""What `make demo` shows once the simulation ran: each subscription's feed (decoded; measurement
feeds as their VM and fleet figures), the state
table from the API with the curl commands to query it, and a short metrics summary.

Read in a terminal of any width and copied from: no table cuts a value short (every cell folds
onto more lines rather than lose characters; free text gives up its width first; the tables have
no side borders to pay for), and each curl command is printed as one line, however narrow the
terminal, so that a copy runs as pasted.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from rich import box
from rich.console import Console
from rich.table import Table

from bridge.kafka_config import consumer_config
from bridge.settings import StreamSettings, load
from streams import codecs, ves, ves_measurement
from streams.subscriptions import load_subscriptions

console = Console()


def read_feed(settings: StreamSettings, topic: str, idle: float = 4.0, timeout: float = 60.0) -> list[Any]:
    consumer = Consumer(consumer_config(settings, "demo-report", None))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < idle:
            batch = [m for m in consumer.consume(500, 0.5) if m.error() is None]
            if batch:
                records.extend(batch)
                last = time.monotonic()
        return records
    finally:
        consumer.close()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def show_feeds(settings: StreamSettings) -> None:
    if settings.subscriptions_file is None:
        return
    subscriptions = load_subscriptions(
        settings.subscriptions_file.read_text(), str(settings.subscriptions_file)
    )
    for subscription in subscriptions:
        records = read_feed(settings, subscription.sink.topic)
        if subscription.sink.format == "ves":
            domains = ", ".join(sorted(subscription.sink.ves_domains))
            show_ves_feed(subscription.name, subscription.sink.topic, domains, records)
            continue
        if subscription.sink.is_measurement:
            events = [json.loads(r.value())["event"] for r in records]
            for table in measurement_tables(subscription.name, subscription.sink.topic, events):
                console.print(table)
            continue
        events = [codecs.decode(r.value()) for r in records]
        console.print(
            feed_table(subscription.name, subscription.sink.topic, subscription.sink.format, events)
        )
        if len(events) > 8:
            console.print(f"  (the last 8 of {len(events)}; print them all with: eventfed consume TOPIC)")


def _table(title: str) -> Table:
    """A table that spends its width on values: no side borders, one space between columns (the
    demo's feed rows fit in 80 columns so)."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )


def _identifier(table: Table, name: str) -> None:
    """A column of short identifiers: kept on one line; the free text columns give way first."""
    table.add_column(name, no_wrap=True, overflow="fold")


def _text(table: Table, name: str) -> None:
    """A column of free text: the first to fold when the terminal is narrow."""
    table.add_column(name, overflow="fold")


def feed_table(name: str, topic: str, sink_format: str, events: Sequence[Mapping[str, Any]]) -> Table:
    """A feed's last 8 events."""
    kinds = Counter(f"{e['status']}.{e['phase']}" for e in events)
    title = (
        f"subscription [bold]{name}[/] -> topic {topic} ({sink_format}): {len(events)} events  "
        + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))
    )
    table = _table(title)
    # The VM's name is left to the API's table: with it a row would not fit in 80 columns.
    for column in ("vim_id", "instance", "status.phase", "state"):
        _identifier(table, column)
    _text(table, "task")
    for event in events[-8:]:
        table.add_row(
            event["vim_id"],
            event["instance_id"][:8],
            f"{event['status']}.{event['phase']}",
            str(event.get("state")),
            str(event.get("state_description") or ""),
        )
    return table


def show_ves_feed(name: str, topic: str, domains: str, records: list[Any]) -> None:
    """A VES feed: the alarms raised and cleared, or the state changes, as DCAE reads them."""
    events = [json.loads(r.value())["event"] for r in records]
    console.print(ves_table(name, topic, events, domains))
    show_stuck_pair(events)


def ves_table(
    name: str, topic: str, events: list[dict[str, Any]], domains: str = "fault, stateChange"
) -> Table:
    """The last two of each kind of fault (failures and stuck actions, raised and cleared), else
    the last 8 events."""
    names = Counter(e["commonEventHeader"]["eventName"] for e in events)
    title = (
        f"subscription [bold]{name}[/] -> topic {topic} (ves: {domains}): {len(events)} VES events  "
        + ", ".join(f"{k} x{n}" for k, n in sorted(names.items()))
    )
    table = _table(title)
    _identifier(table, "severity")
    for column in ("eventName", "sourceName", "eventId", "specificProblem"):
        _text(table, column)
    faults = [e for e in events if e["commonEventHeader"]["domain"] == "fault"]
    # The last two of each kind of fault: failures and stuck actions, raised and cleared.
    shown = [
        e
        for kind in sorted({f["commonEventHeader"]["eventName"] for f in faults})
        for e in [f for f in faults if f["commonEventHeader"]["eventName"] == kind][-2:]
    ]
    for event in shown or events[-8:]:
        header = event["commonEventHeader"]
        fault = event.get("faultFields") or {}
        change = event.get("stateChangeFields") or {}
        table.add_row(
            str(fault.get("eventSeverity") or change.get("newState")),
            header["eventName"],
            str(header.get("sourceName")),
            short_event_id(header["eventId"]),
            str(fault.get("specificProblem") or ""),
        )
    return table


def measurement_tables(name: str, topic: str, events: list[dict[str, Any]]) -> list[Table]:
    """A measurement feed: the last 8 VM events (from Ceilometer's samples) and every VIM's last
    fleet event (eventfed's own figures)."""
    vm_events = [e for e in events if e["commonEventHeader"]["eventName"] == ves_measurement.VM_EVENT_NAME]
    fleet = [e for e in events if e["commonEventHeader"]["eventName"] == ves_measurement.FLEET_EVENT_NAME]
    title = (
        f"subscription [bold]{name}[/] -> topic {topic} (ves-measurement): {len(vm_events)} VM "
        f"measurements, {len(fleet)} fleet measurements"
    )
    vms = _table(title)
    # Two clouds may both have a vnf-0008: the VIM tells them apart.
    for column in ("vim", "sourceName"):
        _identifier(vms, column)
    for column in ("cpu %", "mem MiB", "disk rd B/s", "net in B"):
        vms.add_column(column, justify="right", no_wrap=True)
    for event in vm_events[-8:]:
        header, fields = event["commonEventHeader"], event["measurementFields"]
        cpu = (fields.get("cpuUsageArray") or [{}])[0].get("percentUsage")
        memory = (fields.get("memoryUsageArray") or [{}])[0].get("memoryUsed")
        disk = (fields.get("diskUsageArray") or [{}])[0].get("diskOctetsReadAvg")
        nic = (fields.get("nicPerformanceArray") or [{}])[0].get("receivedOctetsDelta")
        vms.add_row(
            str(header.get("reportingEntityName", "-")),
            short_name(str(header["sourceName"])),
            "-" if cpu is None else f"{cpu:.1f}",
            "-" if memory is None else f"{memory / 1024:.0f}",
            "-" if disk is None else f"{disk:.0f}",
            "-" if nic is None else f"{nic:.0f}",
        )
    fleet_table = _table(
        "the fleet, per VIM: VMs by status at its last interval; events summed over every interval"
    )
    _identifier(fleet_table, "vim")
    _identifier(fleet_table, "figure")
    # Items joined by ", " and written KIND=COUNT: a narrow terminal wraps between items, never inside one.
    fleet_table.add_column("value", overflow="fold")
    last: dict[str, dict[str, Any]] = {}
    kinds: dict[str, Counter[str]] = {}
    lags: dict[str, dict[str, str]] = {}
    for event in fleet:
        vim = event["commonEventHeader"]["sourceId"]
        last[vim] = event
        named = {m["name"]: m["hashMap"] for m in event["measurementFields"]["additionalMeasurements"]}
        kinds.setdefault(vim, Counter()).update({k: int(v) for k, v in named["eventsByKind"].items()})
        lags[vim] = named.get("notificationLagSeconds") or lags.get(vim) or {}
    for vim, event in sorted(last.items()):
        named = {m["name"]: m["hashMap"] for m in event["measurementFields"]["additionalMeasurements"]}
        lag = lags[vim]
        by_kind = kinds[vim]
        fleet_table.add_row(vim, "interval (UTC)", _interval(event["commonEventHeader"]))
        fleet_table.add_row(
            "", "VMs by status", ", ".join(f"{k}={v}" for k, v in sorted(named["vmsByStatus"].items())) or "-"
        )
        fleet_table.add_row(
            "",
            "events",
            f"{sum(by_kind.values())}: " + ", ".join(f"{k}={v}" for k, v in sorted(by_kind.items()))
            if by_kind
            else "0",
        )
        fleet_table.add_row("", "lag p50/p99 s", f"{lag.get('p50', '-')}/{lag.get('p99', '-')}")
    return [vms, fleet_table]


def short_name(name: str) -> str:
    """A VM known only from its samples is named by its uuid: its first 8 characters tell it apart."""
    return f"{name[:8]}..." if len(name) > 12 else name


def _interval(header: Mapping[str, Any]) -> str:
    start = time.strftime("%H:%M:%S", time.gmtime(header["startEpochMicrosec"] / 1e6))
    end = time.strftime("%H:%M:%S", time.gmtime(header["lastEpochMicrosec"] / 1e6))
    return f"{start}-{end}"


def short_event_id(event_id: str) -> str:
    """`{vim}/{uuid}/alarm/{µs}` as `{uuid[:8]}.../alarm/{µs}`: what tells two alarms apart."""
    parts = event_id.split("/")
    return f"{parts[1][:8]}.../{'/'.join(parts[2:])}" if len(parts) > 2 else event_id


def show_stuck_pair(events: list[dict[str, Any]]) -> None:
    """One stuck action's fault and its clear (same eventId), in brief, as `eventfed decode` has them."""
    stuck = [e for e in events if e["commonEventHeader"]["eventName"] == ves.STUCK_EVENT_NAME]
    if not stuck:
        return
    event_id = stuck[0]["commonEventHeader"]["eventId"]
    pair = [e for e in events if e["commonEventHeader"]["eventId"] == event_id]
    console.print(f"a stuck delete, raised then cleared (eventId {event_id}):")
    for event in pair:
        header, fault = event["commonEventHeader"], event["faultFields"]
        brief = {
            "commonEventHeader": {
                k: header[k]
                for k in (
                    "domain",
                    "eventName",
                    "eventId",
                    "priority",
                    "sourceName",
                    "startEpochMicrosec",
                    "lastEpochMicrosec",
                    "sequence",
                )
            },
            "faultFields": {
                k: fault[k] for k in ("alarmCondition", "eventSeverity", "specificProblem", "eventSourceType")
            },
            "alarmAdditionalInformation": fault.get("alarmAdditionalInformation"),
        }
        console.print_json(json.dumps(brief))


def show_state(api: str) -> None:
    console.print(state_table(get_json(f"{api}/api/eventfed/v1/vims")))
    console.print("query it yourself:")
    for command in curl_commands(api):
        # One line however narrow the terminal (rich would break it at the console width), and
        # not read as markup: the JSON bodies hold brackets.
        console.print(f"  {command}", soft_wrap=True, markup=False, highlight=False)


def state_table(vims: Any) -> Table:
    table = _table("the state table, from the API")
    _identifier(table, "vim")
    _text(table, "VMs by state")
    _identifier(table, "last event")
    items = vims.get("vims", vims) if isinstance(vims, dict) else vims
    for vim in items:
        counts = vim.get("states") or vim.get("vm_counts") or vim.get("counts") or {}
        table.add_row(
            str(vim.get("vim_id")),
            ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())),
            str(vim.get("last_event_at") or vim.get("last_event") or ""),
        )
    return table


def curl_commands(api: str) -> list[str]:
    """The API queries the demo suggests, each a complete shell command."""
    json_header = "-H 'Content-Type: application/json'"
    return [
        f"curl -s {api}/api/eventfed/v1/vims",
        f"curl -s '{api}/api/eventfed/v1/demo-owner/region-one/vms?limit=5'",
        f'curl -s -X POST {json_header} -d \'{{"states": ["deleted", "POWER_OFF"]}}\' '
        f"{api}/api/eventfed/v1/demo-owner/region-one/check_vim_status",
        f'curl -s -X POST {json_header} -d \'{{"states": ["stopped"]}}\' '
        f"{api}/api/eventfed/v0/demo-owner_region-one/check_vim_status",
    ]


def metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head = line.split(" ")[0]
            if head == name or head.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def show_metrics(sources: list[tuple[str, str]]) -> None:
    table = _table("metrics (Prometheus, summed)")
    _identifier(table, "process")
    _text(table, "metric")
    table.add_column("value", justify="right", no_wrap=True, overflow="ignore")
    wanted = {
        "listener": [
            "eventfed_listener_notifications_received_total",
            "eventfed_listener_records_written_total",
            "eventfed_listener_dead_lettered_total",
            "eventfed_listener_write_retries_total",
        ],
        "stream": [
            "eventfed_stream_events_total",
            "eventfed_stream_subscription_matches_total",
            "eventfed_stream_duplicates_total",
            "eventfed_stream_stale_total",
            "eventfed_stream_dead_lettered_total",
            "eventfed_stream_stuck_actions_total",
            "eventfed_stream_samples_total",
            "eventfed_stream_measurements_total",
        ],
        "api": ["eventfed_api_state_vms", "eventfed_api_requests_total"],
    }
    for name, url in sources:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except OSError as exc:
            table.add_row(name, f"unreachable: {exc}", "")
            continue
        for metric in wanted.get(name.split(" ")[0], []):
            table.add_row(name, metric, f"{metric_sum(text, metric):.0f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api", required=True)
    parser.add_argument("--metrics", action="append", default=[], help="NAME=URL")
    args = parser.parse_args()
    settings = load(StreamSettings)
    console.rule("what each subscriber received")
    show_feeds(settings)
    console.rule("the latest state of every VM")
    show_state(args.api)
    console.rule("metrics")
    show_metrics([(name, url) for name, _, url in (m.partition("=") for m in args.metrics)])


if __name__ == "__main__":
    main()
