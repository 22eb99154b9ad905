"""Prometheus metrics of the API: requests by route template, and the state table.

Each app has its own registry, so several apps (tests, tools) never clash over metric names.
Table figures are read when Prometheus scrapes, not pushed on every record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bridge.api.read_model import ReadModel
from bridge.health import register_build_info

PREFIX = "eventfed_api"
# Requests that matched no route share one label value, so a scan of random URLs cannot create
# unbounded series.
UNMATCHED_ROUTE = "unmatched"
# Any other method string a client sends is counted as "other", for the same reason.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _StateTableCollector(Collector):
    def __init__(self, read_model: ReadModel) -> None:
        self._read_model = read_model

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        model = self._read_model
        table = model.table
        vms = GaugeMetricFamily(f"{PREFIX}_state_vms", "VMs in the state table, per VIM", labels=["vim_id"])
        for vim_id, count in sorted(table.vm_counts().items()):
            vms.add_metric([vim_id], count)
        yield vms
        # Bounded: Nova's vm_states (about a dozen) per VIM. "error" here is a VM failure standing.
        by_state = GaugeMetricFamily(
            f"{PREFIX}_state_vms_by_vm_state",
            "VMs in the state table, per VIM and Nova vm_state",
            labels=["vim_id", "vm_state"],
        )
        for vim in sorted(table.vims(), key=lambda overview: overview.vim_id):
            for vm_state, count in sorted(vim.state_counts.items()):
                by_state.add_metric([vim.vim_id, vm_state], count)
        yield by_state
        # The fleet figure the API holds: VMs by Nova API status (the stream worker's fleet event
        # carries the same per interval, with the event flow only the workers see).
        by_status = GaugeMetricFamily(
            f"{PREFIX}_fleet_vms",
            "VMs per VIM and Nova API status (UNKNOWN: known from Ceilometer samples only)",
            labels=["vim", "status"],
        )
        for vim_id, counts in sorted(table.api_status_counts().items()):
            for status, count in sorted(counts.items()):
                by_status.add_metric([vim_id, status], count)
        yield by_status
        last_event = GaugeMetricFamily(
            f"{PREFIX}_fleet_last_event_timestamp_seconds",
            "Time of the latest event of any VM of the VIM in the state table (epoch seconds)",
            labels=["vim"],
        )
        for vim_id, at in sorted(table.last_event_times().items()):
            last_event.add_metric([vim_id], at)
        yield last_event
        records = CounterMetricFamily(
            f"{PREFIX}_state_records",
            "State topic records read, by outcome (upserted, removed, malformed, skipped: not a VM's)",
            labels=["outcome"],
        )
        for outcome, count in sorted(table.outcomes.items()):
            records.add_metric([outcome], count)
        yield records
        readiness = model.readiness()
        yield GaugeMetricFamily(
            f"{PREFIX}_state_caught_up",
            "1 once the table caught up with the state topic",
            value=int(model.caught_up),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_kafka_reachable",
            "1 while Kafka answers metadata requests",
            value=int(readiness.kafka_reachable),
        )
        seconds = model.catch_up_seconds
        if seconds is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_state_catch_up_seconds",
                "Time the start-up replay of the state topic took",
                value=seconds,
            )


class ApiMetrics:
    def __init__(self, read_model: ReadModel) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            f"{PREFIX}_requests",
            "HTTP requests, by method, route template and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time to produce a response, by method and route template",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateTableCollector(read_model))
        register_build_info("api", self.registry)

    def instrument(self, app: Flask) -> None:
        app.before_request(self._start_timer)
        app.after_request(self._observe)

    @staticmethod
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    def _observe(self, response: Response) -> Response:
        started = g.get("request_started")
        rule = request.url_rule
        route = rule.rule if rule is not None else UNMATCHED_ROUTE
        method = request.method if request.method in KNOWN_METHODS else "other"
        self.requests.labels(method, route, str(response.status_code)).inc()
        # For a streamed answer this is the time to its first byte, which is what the server controls.
        if started is not None:
            self.latency.labels(method, route).observe(time.perf_counter() - started)
        return response
