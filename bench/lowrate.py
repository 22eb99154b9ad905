"""The rates clouds really send: steady 10/s, 100/s and 300/s end to end, against a drain of a
backlog in the same run, and beside Ceilometer's notification agent (bench.ceilometer_peer).

One `eventfed listen` and one `eventfed stream` run for the section (settings as shipped), each
counting its Kafka requests (bench.kafka_requests_internals). Wire publishers send simulated Nova
lifecycles through RabbitMQ at each rate for a short window; per notification, the CPU seconds of
the listener, the worker, the Kafka broker (the whole broker process: other clients of a shared
broker add to it) and RabbitMQ over the window, divided by what was sent. CPU per notification is
robust to other work on the machine; wall latency is not (a stall of another process shows in the
p99), so both are reported.

The drain: the listener is stopped, a backlog is queued in its pooled queue, and the listener
started again; its CPU per notification is taken from the first notification written to the last,
the worker's likewise over the events it wrote. The ratio of the 100/s figure to the drain figure
is what the quiet path costs beyond a busy one.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from bench import amqputil, ceilometer_peer, floors
from bench.context import Context, cpu_from_samples
from bench.e2e import Pipeline
from bench.kafka_requests_internals import per_second, read
from bench.procs import CpuMeter, cpu_seconds, listening_pid, wait_until
from bench.publish import notes_for

LOG = logging.getLogger(__name__)

RATES = (10, 100, 300)
WINDOW_SECONDS = 30.0
WINDOW_SECONDS_QUICK = 8.0
IDLE_SECONDS = 15.0
DRAIN_NOTIFICATIONS = 20_000
DRAIN_NOTIFICATIONS_QUICK = 4_000
ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO_TO_DRAIN = 3.0
TARGET_SHARE_OF_CEILOMETER = 0.5
TARGET_P99_MS_AT_100 = 50.0
PROCESSES = ("listener", "stream")


def kafka_broker_pid(bootstrap: str) -> int | None:
    """The broker's PID, from the PID file `scripts/kafka` keeps (read only; another checkout's
    with EVENTFED_BENCH_KAFKA_PID_FILE), else whoever listens on the bootstrap port."""
    port = int(bootstrap.rpartition(":")[2])
    default = ROOT / ".run" / f"kafka-{port}" / "kafka.pid"
    pid_file = Path(os.environ.get("EVENTFED_BENCH_KAFKA_PID_FILE", str(default)))
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return listening_pid(port)


class Window:
    """CPU of the named processes and Kafka requests of eventfed's clients over one window."""

    def __init__(self, pipeline: Pipeline, broker_pid: int | None) -> None:
        self.pipeline = pipeline
        assert pipeline.listener is not None
        self.meter = CpuMeter(
            {
                "listener": pipeline.listener.pid,
                "stream": pipeline.stream.pid,
                "kafka broker": broker_pid,
                "rabbitmq": listening_pid(5672),
            }
        )
        self.cores: dict[str, float] = {}
        self.seconds = 0.0
        self._requests: dict[str, dict[str, Any]] = {}
        self.requests_per_second: dict[str, dict[str, float]] = {}
        self._started = 0.0

    def _files(self) -> dict[str, Path]:
        files = {"listener": self.pipeline.listener_requests, "stream": self.pipeline.stream_requests}
        return {name: path for name, path in files.items() if path is not None}

    def __call__(self, event: str) -> None:
        if event == "start":
            self._started = time.monotonic()
            self.meter.start()
            self._requests = {name: read(path) for name, path in self._files().items()}
            return
        self.cores = self.meter.stop()
        self.seconds = time.monotonic() - self._started
        # The counts are written once a second: wait for a reading from after the window.
        time.sleep(1.2)
        for name, path in self._files().items():
            self.requests_per_second[name] = per_second(self._requests.get(name, {}), read(path))


def _per_notification_us(cores: dict[str, float], seconds: float, sent: int) -> dict[str, float]:
    if not sent:
        return {}
    return {name: used * seconds / sent * 1e6 for name, used in cores.items()}


def _kafka_requests(window: Window) -> dict[str, Any]:
    """Requests per second eventfed's clients sent to Kafka, by kind, and in all."""
    by_process = window.requests_per_second
    total: dict[str, float] = {}
    for rates in by_process.values():
        for api, rate in rates.items():
            total[api] = total.get(api, 0.0) + rate
    return {
        "produce": total.get("Produce", 0.0),
        "commit": total.get("OffsetCommit", 0.0),
        "fetch": total.get("Fetch", 0.0),
        "all": sum(total.values()),
        "by_api": total,
        "by_process": by_process,
    }


def steady(
    pipeline: Pipeline, rate: int, seconds: float, seed: int, broker_pid: int | None
) -> dict[str, Any]:
    window = Window(pipeline, broker_pid)
    outcome = pipeline.run_rate(rate, seconds, "wire", seed, on_window=window)
    per_note = _per_notification_us(window.cores, window.seconds, outcome["sent"])
    result = {
        "rate": rate,
        "sent": outcome["sent"],
        "seconds": window.seconds,
        "achieved_per_second": outcome["achieved_per_second"],
        "sustained": outcome["sustained"],
        "cores": window.cores,
        "cpu_us_per_notification": per_note,
        "eventfed_cpu_us_per_notification": sum(per_note.get(p, 0.0) for p in PROCESSES),
        "kafka_requests_per_second": _kafka_requests(window),
        "latency_ms": outcome["latency"]["ms"],
        "latency_legs_ms": outcome["latency"]["legs_ms"],
        "latency_events": outcome["latency"]["events"],
        "batches": outcome["batches"],
    }
    requests = result["kafka_requests_per_second"]
    LOG.info(
        "low rate %d/s: listener %.0f us, worker %.0f us, broker %.0f us per notification; "
        "kafka requests/s produce %.1f commit %.1f fetch %.1f all %.1f; p50 %.1f p99 %.1f ms",
        rate,
        per_note.get("listener", float("nan")),
        per_note.get("stream", float("nan")),
        per_note.get("kafka broker", float("nan")),
        requests["produce"],
        requests["commit"],
        requests["fetch"],
        requests["all"],
        result["latency_ms"]["p50"],
        result["latency_ms"]["p99"],
    )
    return result


def idle(pipeline: Pipeline, seconds: float, broker_pid: int | None) -> dict[str, Any]:
    """Nothing sent: what a quiet cloud costs, in cores and in Kafka requests per second."""
    time.sleep(1.0)
    window = Window(pipeline, broker_pid)
    window("start")
    time.sleep(seconds)
    window("stop")
    requests = _kafka_requests(window)
    result = {"seconds": window.seconds, "cores": window.cores, "kafka_requests_per_second": requests}
    LOG.info(
        "idle: listener %.3f, worker %.3f cores; kafka requests/s %.1f",
        window.cores.get("listener", float("nan")),
        window.cores.get("stream", float("nan")),
        requests["all"],
    )
    return result


def drain(pipeline: Pipeline, count: int, seed: int) -> dict[str, Any]:
    """A backlog queued while the listener was stopped, then drained; CPU per notification of the
    listener (over what it wrote) and of the worker (over the events it wrote)."""
    pipeline.stop_listener()
    notes = notes_for(count, seed)
    published = amqputil.prefill(pipeline.ctx.vhost, [pipeline.pool], notes, 120)
    pipeline.fingerprints.update((n.instance_id, n.event_type) for n in notes)
    pipeline.sent_total += count
    raw_before, events_before = pipeline.counts()
    pipeline.restart_listener()
    assert pipeline.listener is not None
    listener_pid, stream_pid = pipeline.listener.pid, pipeline.stream.pid
    samples: list[tuple[float, int, int, float, float]] = []

    def sample() -> bool:
        raw, events = pipeline.counts()
        samples.append(
            (
                time.monotonic(),
                raw - raw_before,
                events - events_before,
                cpu_seconds(listener_pid),
                cpu_seconds(stream_pid),
            )
        )
        return events - events_before >= count

    drained = wait_until(sample, 60 + count / 200, 0.2)
    listener = cpu_from_samples([(t, raw, cpu) for t, raw, _, cpu, _ in samples], count)
    stream = cpu_from_samples([(t, events, cpu) for t, _, events, _, cpu in samples], count)
    result = {
        "notifications": count,
        "drained": drained,
        "published_per_second": published["published_per_second"],
        "cpu_us_per_notification": {
            "listener": listener["cpu_us_per_record"],
            "stream": stream["cpu_us_per_record"],
        },
        "eventfed_cpu_us_per_notification": listener["cpu_us_per_record"] + stream["cpu_us_per_record"],
    }
    LOG.info(
        "drain of %d: listener %.0f us, worker %.0f us per notification",
        count,
        listener["cpu_us_per_record"],
        stream["cpu_us_per_record"],
    )
    return result


def run(ctx: Context) -> dict[str, Any]:
    seconds = WINDOW_SECONDS_QUICK if ctx.quick else WINDOW_SECONDS
    broker_pid = kafka_broker_pid(ctx.bootstrap)
    result: dict[str, Any] = {
        "window_seconds": seconds,
        "kafka_broker_pid_found": broker_pid is not None,
        "rates": [],
        "targets": {
            "ratio_to_drain_at_100": TARGET_RATIO_TO_DRAIN,
            "share_of_ceilometer_at_100": TARGET_SHARE_OF_CEILOMETER,
            "p99_ms_at_100": TARGET_P99_MS_AT_100,
        },
    }
    requests_dir = ctx.log_dir / "lowrate-requests"
    requests_dir.mkdir(parents=True, exist_ok=True)
    with ctx.fleet() as fleet:
        pipeline = Pipeline(ctx, fleet, "lowrate", requests_dir, quiet_bench=True)
        try:
            # Warm-up, not reported: metadata of new topics, Faust's first batches.
            pipeline.run_rate(200, 5.0, "wire", 1)
            result["idle"] = idle(pipeline, 5.0 if ctx.quick else IDLE_SECONDS, broker_pid)
            for seed, rate in enumerate(RATES, 2):
                result["rates"].append(steady(pipeline, rate, seconds, seed, broker_pid))
            idle_broker = result["idle"]["cores"].get("kafka broker")
            for run in result["rates"]:
                # The shared broker's own idle load (other clients, its timers) taken out: an
                # estimate of what eventfed's traffic cost it, as good as that load was steady.
                used = run["cores"].get("kafka broker")
                if used is not None and idle_broker is not None and run["sent"]:
                    run["broker_us_above_idle"] = (used - idle_broker) * run["seconds"] / run["sent"] * 1e6
            # The frameworks' own cost at 100/s, on the same notifications (bench.floors).
            result["floors"] = floors.measure(ctx, pipeline, 100, seconds, 20)
            result["drain"] = drain(
                pipeline, DRAIN_NOTIFICATIONS_QUICK if ctx.quick else DRAIN_NOTIFICATIONS, 9
            )
            result["accounting"] = pipeline.account()
        finally:
            pipeline.close()
    peaks = ctx.sampler.peaks
    result["eventfed_peak_rss_mib"] = {
        name: peaks.get(f"lowrate/{name}", 0) / 2**20 for name in ("listener", "stream")
    }
    result["ceilometer"] = ceilometer_peer.run(
        ctx, rate=100, seconds=seconds, backlog=DRAIN_NOTIFICATIONS_QUICK if ctx.quick else 6_000
    )
    result["comparison"] = compare(result)
    return result


def compare(result: dict[str, Any]) -> dict[str, Any]:
    """The same-run ratios the targets are stated in."""
    at_100 = next((r for r in result["rates"] if r["rate"] == 100), None)
    drained = result.get("drain", {})
    if at_100 is None or not drained:
        return {}
    eventfed_100 = at_100["eventfed_cpu_us_per_notification"]
    eventfed_drain = drained["eventfed_cpu_us_per_notification"]
    comparison: dict[str, Any] = {
        "eventfed_us_at_100": eventfed_100,
        "eventfed_us_drain": eventfed_drain,
        "ratio_100_to_drain": eventfed_100 / eventfed_drain if eventfed_drain else float("nan"),
        "listener_ratio_100_to_drain": at_100["cpu_us_per_notification"].get("listener", float("nan"))
        / drained["cpu_us_per_notification"]["listener"],
        "stream_ratio_100_to_drain": at_100["cpu_us_per_notification"].get("stream", float("nan"))
        / drained["cpu_us_per_notification"]["stream"],
        "p99_ms_at_100": at_100["latency_ms"]["p99"],
        "broker_us_at_100": at_100["cpu_us_per_notification"].get("kafka broker", float("nan")),
        "broker_us_above_idle_at_100": at_100.get("broker_us_above_idle", float("nan")),
        "kafka_requests_per_second_at_100": at_100["kafka_requests_per_second"]["all"],
    }
    peer = result.get("ceilometer", {})
    ceilometer_100 = (peer.get("steady") or {}).get("cpu_us_per_notification")
    if ceilometer_100:
        comparison["ceilometer_us_at_100"] = ceilometer_100
        comparison["share_of_ceilometer_at_100"] = eventfed_100 / ceilometer_100
    floor = (result.get("floors") or {}).get("cpu_us_per_notification") or {}
    if len(floor) == len(floors.KINDS):
        # What the frameworks cost alone (bench.floors) against what the targets allow eventfed.
        comparison["framework_floor_us_at_100"] = floor["oslo"] + floor["faust"]
        comparison["framework_floor_driven_us_at_100"] = floor["oslo-driven"] + floor["faust-driven"]
        comparison["eventfed_own_us_at_100"] = eventfed_100 - comparison["framework_floor_driven_us_at_100"]
        comparison["allowed_us_by_ratio_to_drain"] = TARGET_RATIO_TO_DRAIN * eventfed_drain
        if ceilometer_100:
            comparison["allowed_us_by_share_of_ceilometer"] = TARGET_SHARE_OF_CEILOMETER * ceilometer_100
    comparison["meets_ratio_to_drain"] = comparison["ratio_100_to_drain"] <= TARGET_RATIO_TO_DRAIN
    comparison["meets_p99_at_100"] = (comparison["p99_ms_at_100"] or 1e9) <= TARGET_P99_MS_AT_100
    if "share_of_ceilometer_at_100" in comparison:
        comparison["meets_share_of_ceilometer"] = (
            comparison["share_of_ceilometer_at_100"] <= TARGET_SHARE_OF_CEILOMETER
        )
    return comparison
