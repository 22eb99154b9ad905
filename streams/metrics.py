"""The stream worker's Prometheus metrics, defined once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "eventfed_stream_events_total", "Events by outcome, kind and phase", ["outcome", "status", "phase"]
)
DEAD_LETTERED = Counter("eventfed_stream_dead_lettered_total", "Raw records dead-lettered", ["reason"])
DUPLICATES = Counter("eventfed_stream_duplicates_total", "Duplicate notifications dropped", ["reason"])
STALE = Counter("eventfed_stream_stale_total", "Events older than the applied state", ["reason"])
REPLAYED = Counter("eventfed_stream_replayed_total", "Records re-published after a restart")
IGNORED = Counter("eventfed_stream_ignored_total", "Notifications that are not instance status events")
MATCHES = Counter(
    "eventfed_stream_subscription_matches_total", "Events sent per subscription", ["subscription"]
)
BATCH_SECONDS = Histogram(
    "eventfed_stream_batch_duration_seconds", "Time to process one batch and confirm its writes"
)
PHASE_SECONDS = Histogram(
    "eventfed_stream_phase_duration_seconds",
    "Time one batch spends deciding its outcomes (process) and having its outputs, then its "
    "states, confirmed by Kafka (write)",
    ["phase"],
)
BATCH_SIZE = Histogram(
    "eventfed_stream_batch_size", "Records per batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 5000)
)
SEND_RETRIES = Counter("eventfed_stream_send_retries_total", "Batches whose writes were retried")
COMMIT_FAILURES = Counter(
    "eventfed_stream_commit_failures_total", "Offset commits refused (the records will be replayed)"
)
REDELIVERED = Counter(
    "eventfed_stream_redelivered_total", "Records delivered after they were read over a hole, handled already"
)
GAP_FILLS = Counter(
    "eventfed_stream_gap_fills_total",
    "Holes of records that did not reach the worker, read from Kafka by offset",
)
FILLED = Counter("eventfed_stream_filled_records_total", "Records read from Kafka by offset to fill a hole")
LOST_TO_RETENTION = Counter(
    "eventfed_stream_lost_to_retention_total", "Raw records deleted by retention before they were handled"
)
DROPPED_AFTER_REBALANCE = Counter(
    "eventfed_stream_dropped_after_rebalance_total",
    "Records fetched before a rebalance and left for the partition's new owner",
)
STUCK = Counter(
    "eventfed_stream_stuck_actions_total", "Actions that got no end in time (stuck alarms raised)", ["kind"]
)
TOMBSTONES = Counter("eventfed_stream_tombstones_total", "Deleted VMs removed from the state topic")
SUBSCRIPTIONS = Gauge("eventfed_stream_subscriptions", "Subscriptions in force")
SUBSCRIPTION_RELOADS = Counter(
    "eventfed_stream_subscription_reloads_total", "Subscription file reloads", ["result"]
)
STATE_SIZE = Gauge("eventfed_stream_state_vms", "VMs in this worker's state table")
SAMPLES = Counter(
    "eventfed_stream_samples_total",
    "Ceilometer samples by what became of them (counted, duplicate, late, after_delete, "
    "other_instance, invalid)",
    ["outcome"],
)
MEASUREMENTS = Counter(
    "eventfed_stream_measurements_total", "VES measurement events written (per VM and per VIM)", ["scope"]
)
MEASUREMENT_SECONDS = Histogram(
    "eventfed_stream_measurement_sweep_seconds", "Time to close one interval on this worker's VMs"
)
FLEET_PARTS = Counter(
    "eventfed_stream_fleet_parts_total", "Fleet parts (one raw partition's share of a VIM) written"
)
FLEET_MERGED = Counter(
    "eventfed_stream_fleet_merged_total",
    "Fleet parts and manifests merged, by what became of them (added, again, late)",
    ["outcome"],
)
FLEET_INCOMPLETE = Counter(
    "eventfed_stream_fleet_incomplete_total",
    "Fleet events sent at the merge deadline without every raw partition's share",
)
# The fleet figures of the last closed interval, set by the worker that merged the VIM's
# figures (labels: the VIM, and the API status or event kind).
FLEET_VMS = Gauge("eventfed_fleet_vms", "VMs by Nova API status", ["vim", "status"])
FLEET_EVENTS = Gauge(
    "eventfed_fleet_interval_events", "Events in the last interval by kind", ["vim", "status"]
)
FLEET_FAILURES_RAISED = Gauge("eventfed_fleet_interval_vm_failures_raised", "VM failures raised", ["vim"])
FLEET_FAILURES_CLEARED = Gauge("eventfed_fleet_interval_vm_failures_cleared", "VM failures cleared", ["vim"])
FLEET_STUCK = Gauge("eventfed_fleet_interval_stuck_actions", "Stuck-action alarms raised", ["vim"])
FLEET_LAG_P50 = Gauge(
    "eventfed_fleet_notification_lag_p50_seconds",
    "Median of eventfed's receipt minus Nova's timestamp",
    ["vim"],
)
FLEET_LAG_P99 = Gauge(
    "eventfed_fleet_notification_lag_p99_seconds", "99th percentile of the notification lag", ["vim"]
)


def count_measurement(kind: str, counts: Mapping[str, int] | None, outputs: int) -> None:
    """A metered or measured outcome in the metrics, once written."""
    for outcome, number in (counts or {}).items():
        if number:
            SAMPLES.labels(outcome).inc(number)
    if kind == "measured" and outputs:
        MEASUREMENTS.labels("vm").inc(outputs)


# The (vim, status) series each labelled fleet gauge has: a status gone from the figures is
# removed rather than left at its last value.
_FLEET_SERIES: dict[int, set[tuple[str, str]]] = {}


def _set_by_status(gauge: Gauge, vim: str, numbers: Mapping[str, int]) -> None:
    series = _FLEET_SERIES.setdefault(id(gauge), set())
    for gone in [s for s in series if s[0] == vim and s[1] not in numbers]:
        gauge.remove(*gone)
        series.discard(gone)
    for status, number in numbers.items():
        gauge.labels(vim, status).set(number)
        series.add((vim, status))


def set_fleet(figures: Sequence[Any]) -> None:
    """The fleet gauges from one interval's figures (streams.ves_measurement.FleetFigures)."""
    for figure in figures:
        vim = figure.vim_id
        _set_by_status(FLEET_VMS, vim, figure.vms_by_status)
        _set_by_status(FLEET_EVENTS, vim, figure.events_by_kind)
        FLEET_FAILURES_RAISED.labels(vim).set(figure.failures_raised)
        FLEET_FAILURES_CLEARED.labels(vim).set(figure.failures_cleared)
        FLEET_STUCK.labels(vim).set(figure.stuck_actions)
        if figure.lag_p50 is not None:
            FLEET_LAG_P50.labels(vim).set(figure.lag_p50)
        if figure.lag_p99 is not None:
            FLEET_LAG_P99.labels(vim).set(figure.lag_p99)
