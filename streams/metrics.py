"""The stream worker's Prometheus metrics, defined once."""

from __future__ import annotations

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
