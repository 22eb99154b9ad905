"""End to end: latency from the Notifier's send to the event on a subscription topic, at fixed
rates, and the highest rate the listener and the stream worker sustain together.

One `eventfed listen` and one `eventfed stream` run for the whole section (settings as shipped).
Publisher processes send simulated Nova lifecycles on a fixed schedule. A consumer in this
process reads the subscription topics; an event's latency is its arrival there (this consumer's
clock) minus its `occurred_at`, which is the Notifier's send time (oslo's message timestamp, read
by normalise), all on one machine's clock. The event also carries the listener's `received_at`
and the stream's Kafka record timestamp, which split the latency into three legs.

Backlog, sampled every half second, is what was sent but is not yet on the canonical events
topic (every notification makes exactly one event there); split into the listener's part (not
yet on the raw topic) and the stream's. A rate is sustained when the publishers reached it and
the backlog did not grow by more than 5% of the rate per second over the run's second half.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench.amqputil import queue_exists
from bench.context import AccountingError, Context, percentiles
from bench.kafkautil import Offsets, event_times, read_ids
from bench.procs import CpuMeter, Proc, free_port, listening_pid, metric_sum, scrape, wait_http, wait_until
from bench.publish import Publishers, PublisherSpec
from schemas.raw import HEADER_EVENT_TYPE, HEADER_MESSAGE_ID

LOG = logging.getLogger(__name__)

TARGET_P99_MS_AT_1000 = 100.0
TARGET_P99_MS_AT_100 = 50.0
TARGET_SUSTAINED_PER_SECOND = 3000
FIXED_RATES = (100, 1000, 5000)
SHIPPED = "as shipped, wire publisher"
SHIPPED_RETRY = "as shipped, wire publisher, second try"
SHIPPED_REPEAT = "as shipped, wire publisher, repeated"
# Runs of each latency target's rate in a full run: one run's p99 is its worst 1% of a few seconds,
# which one stall of another process on these shared cores can set; the report takes the median.
TARGET_RATE_RUNS = 3
NOTIFIER = "as shipped, oslo Notifier publisher"
# The listener's batch window fixed at 10 ms (settings) against the shipped adaptive 2-50 ms one.
WHAT_IF = "listener window fixed at 10 ms (EVENTFED_BATCH_TIMEOUT=EVENTFED_BATCH_TIMEOUT_MAX=0.01)"
WHAT_IF_SETTINGS = {"EVENTFED_BATCH_TIMEOUT": "0.01", "EVENTFED_BATCH_TIMEOUT_MAX": "0.01"}
WARM_UP = "warm-up (not reported)"
WARM_UP_SECONDS = 5.0
# How long the idle listener and worker are measured, with nothing sent.
IDLE_SECONDS = 20.0
IDLE_SECONDS_QUICK = 5.0
# Largest share of one oslo Notifier process (it tops out near 1,500/s here).
OSLO_PER_PROCESS = 600.0
WIRE_PER_PROCESS = 3000.0


class SubscriptionReader(threading.Thread):
    """Reads every subscription topic from the start; records each event's timings."""

    def __init__(
        self, bootstrap: str, formats: dict[str, str], offsets: Offsets, fetch_wait_ms: int = 10
    ) -> None:
        super().__init__(name="subscription-reader", daemon=True)
        self._formats = formats
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-latency-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": fetch_wait_ms,
                "fetch.min.bytes": 1,
            }
        )
        self._consumer.assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for t in formats for p in offsets.partitions(t)]
        )
        self._halt = threading.Event()
        # (occurred_at, received_at, kafka timestamp, arrival): epoch seconds
        self.samples: list[tuple[float, float, float, float]] = []
        self.read = 0
        self.errors = 0

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                # consume(n, timeout) returns early only once it holds n records, so a timed
                # batch read would add up to its timeout to every arrival: wait for the first
                # record, then take what is already fetched.
                first = self._consumer.poll(0.05)
                if first is None:
                    continue
                batch = [first, *self._consumer.consume(1000, 0)]
                arrival = time.time()
                for message in batch:
                    if message.error() is not None:
                        continue
                    fmt = self._formats[message.topic() or ""]
                    if fmt == "ves":
                        # VES records carry no receive time; they are counted, not timed.
                        self.read += 1
                        continue
                    try:
                        occurred, received, _ = event_times(message.value() or b"", fmt)
                    except Exception:
                        self.errors += 1
                        continue
                    self.samples.append((occurred, received, message.timestamp()[1] / 1000, arrival))
                    self.read += 1
        finally:
            self._consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of backlog over time (records per second)."""
    if len(points) < 3:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_b = sum(b for _, b in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (b - mean_b) for t, b in points) / var if var else 0.0


def _latency_summary(
    samples: list[tuple[float, float, float, float]], since: float, until: float
) -> dict[str, Any]:
    mine = [s for s in samples if since <= s[0] <= until]
    total = [(arrival - occurred) * 1000 for occurred, _, _, arrival in mine]
    return {
        "events": len(mine),
        "ms": percentiles(total),
        "legs_ms": {
            "send_to_listener": percentiles([(r - o) * 1000 for o, r, _, _ in mine]),
            "listener_to_stream_write": percentiles([(k - r) * 1000 for _, r, k, _ in mine]),
            "stream_write_to_consumer": percentiles([(a - k) * 1000 for _, _, k, a in mine]),
        },
        "_latencies_ms": total,
    }


class Pipeline:
    """Listener + stream worker + the reader, for the whole section."""

    def __init__(
        self,
        ctx: Context,
        fleet: Any,
        section: str = "e2e",
        requests_dir: Path | None = None,
        quiet_bench: bool = False,
    ) -> None:
        """requests_dir: count the Kafka requests of the listener and the worker, files there
        (bench.kafka_requests_internals). quiet_bench: the bench's own traffic kept small, for
        measuring low rates: the latency reader's fetches wait for data up to 500 ms (the broker
        answers as soon as a record comes, so arrivals are timed the same), and the backlog is
        sampled every 5 s (each sample scrapes the listener's metrics and asks Kafka for every
        partition's end)."""
        self.sample_every = 5.0 if quiet_bench else 0.5
        self.ctx = ctx
        self.section = section
        self.requests_dir = requests_dir
        self.topics = ctx.topics(section)
        self.pool = f"{ctx.prefix}{section}.pool"
        self.subscriptions_file, self.formats = ctx.subscriptions(section)
        self.offsets = Offsets(ctx.bootstrap)
        self.fleet = fleet
        self.stream_port = free_port()
        self.listener: Proc | None = None
        self.listener_port = 0
        self.listener_requests: Path | None = None
        self.stream_requests = requests_dir / "stream.json" if requests_dir else None
        self._raw_base = self._raw_last = 0
        self.restart_listener()
        self.stream = fleet.start(
            f"{section}/stream",
            ["stream"],
            ctx.stream_env(section, self.topics, self.subscriptions_file, self.stream_port),
            requests_to=self.stream_requests,
        )
        wait_http(f"http://127.0.0.1:{self.stream_port}/readyz", 180, self.stream)
        # Faust is ready once it owns its partitions; the first fetch may still be settling.
        time.sleep(2.0)
        self.reader = SubscriptionReader(
            ctx.bootstrap, self.formats, self.offsets, fetch_wait_ms=500 if quiet_bench else 10
        )
        self.reader.start()
        self.sent_total = 0
        self.fingerprints: Counter[tuple[str, str]] = Counter()
        self.unsettled: Counter[tuple[str, str]] = Counter()

    def stop_listener(self) -> None:
        """Stop the listener; its pooled queue stays, and fills, until restart_listener."""
        if self.listener is not None:
            self._raw_written()
            self.fleet.stop(self.listener)
            self._raw_base += self._raw_last
            self.listener = None
        self._raw_last = 0

    def restart_listener(self, **settings: str) -> None:
        """(Re)start the listener on the same pooled queue, with extra settings."""
        self.stop_listener()
        self.listener_port = free_port()
        if self.requests_dir is not None:
            self.listener_requests = self.requests_dir / f"listener-{self.listener_port}.json"
        self.listener = self.fleet.start(
            f"{self.section}/listener",
            ["listen"],
            self.ctx.listener_env(
                self.pool, self.topics["raw"], self.topics["dlq"], self.listener_port, **settings
            ),
            requests_to=self.listener_requests,
        )
        wait_http(f"http://127.0.0.1:{self.listener_port}/readyz", 60, self.listener)
        # Ready means the brokers answer; the pooled queue is declared just after. Until it is,
        # RabbitMQ would drop what the publishers send.
        if not wait_until(lambda: queue_exists(self.ctx.vhost, self.pool), 60, 0.3):
            raise RuntimeError(f"the listener did not declare queue {self.pool}")

    def idle_cores(self, seconds: float) -> dict[str, float]:
        """Cores the listener and the worker use while nothing is sent (what a quiet cloud costs)."""
        time.sleep(1.0)  # the warm-up's last batches written
        meter = CpuMeter(
            {"listener": self.listener.pid if self.listener else None, "stream": self.stream.pid}
        ).start()
        time.sleep(seconds)
        cores = meter.stop()
        LOG.info("idle: %s", ", ".join(f"{name} {used:.3f}" for name, used in cores.items()))
        return {"seconds": seconds, **cores}

    def counts(self) -> tuple[int, int]:
        """(notifications the listeners wrote to the raw topic, events written). The raw topic
        packs notifications, so its offsets do not count them; the listener's counter does."""
        return self._raw_written(), self.offsets.count(self.topics["events"])

    def _raw_written(self) -> int:
        with contextlib.suppress(OSError):
            self._raw_last = int(
                metric_sum(scrape(self.listener_port), "eventfed_listener_records_written_total")
            )
        return self._raw_base + self._raw_last

    def run_rate(
        self,
        rate: int,
        seconds: float,
        mode: str,
        seed: int,
        on_window: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """on_window: called with "start" as the publishers start and "stop" as they stop sending."""
        per_process = OSLO_PER_PROCESS if mode == "oslo" else WIRE_PER_PROCESS
        processes = max(1, round(rate / per_process + 0.49))
        specs = [
            PublisherSpec(mode, self.ctx.vhost, rate / processes, seconds, seed * 100 + i)
            for i in range(processes)
        ]
        raw_before, events_before = self.counts()
        publishers = Publishers(specs)
        samples: list[tuple[float, int, int, int]] = []
        meter = CpuMeter(
            {
                "listener": self.listener.pid if self.listener else None,
                "stream": self.stream.pid,
                "kafka broker": listening_pid(int(self.ctx.bootstrap.rpartition(":")[2])),
                "rabbitmq": listening_pid(5672),
                "bench driver": os.getpid(),
            }
        )
        cores: dict[str, float] = {}
        batches_before = self._batch_counters()
        try:
            send_started = publishers.start()
            meter.start()
            if on_window is not None:
                on_window("start")
            for pid in publishers.pids:
                self.ctx.sampler.track("e2e/publisher (each)", pid)
            t0 = time.monotonic()
            deadline = t0 + seconds * 1.5 + 10
            sampled = t0
            while time.monotonic() < deadline:
                time.sleep(0.5)
                sending = publishers.sending()
                if sending and time.monotonic() - sampled < self.sample_every:
                    continue
                sampled = time.monotonic()
                sent = publishers.sent()
                raw, events = self.counts()
                samples.append((time.monotonic() - t0, sent, raw - raw_before, events - events_before))
                if not sending:
                    break
            cores = meter.stop()
            if on_window is not None:
                on_window("stop")
            batches = self._batch_stats(batches_before)
            # Long enough for a publisher held by flow control to close its connection.
            outcomes = publishers.finish(120)
        finally:
            for pid in publishers.pids:
                self.ctx.sampler.untrack(pid)
            publishers.stop()
        send_ended = send_started + max(o["seconds"] for o in outcomes)
        sent = sum(o["sent"] for o in outcomes)
        for outcome in outcomes:
            self.fingerprints.update(tuple(f) for f in outcome["fingerprints"])
            self.unsettled.update(tuple(f) for f in outcome.get("unsettled", []))
        self.sent_total += sent
        # Drain: wait until every notification of this run is an event.
        drain_started = time.monotonic()
        settled = sent - sum(len(o.get("unsettled", [])) for o in outcomes)
        drained = wait_until(
            lambda: self.counts()[1] - events_before >= settled, min(240.0, 30 + sent / 400), 0.25
        )
        drain_seconds = time.monotonic() - drain_started
        time.sleep(1.0)  # the reader's last fetch
        send_seconds = max(o["seconds"] for o in outcomes)
        achieved = sent / send_seconds if send_seconds else 0.0
        backlog = [(t, s - e) for t, s, _, e in samples]
        second_half = [(t, b) for t, b in backlog if t >= send_seconds / 2 and t <= send_seconds]
        slope = _slope(second_half)
        latency = _latency_summary(self.reader.samples, send_started - 0.001, send_ended + 0.5)
        result = {
            "rate": rate,
            "publisher": mode,
            "publisher_processes": processes,
            "seconds": send_seconds,
            "sent": sent,
            "achieved_per_second": achieved,
            "publisher_worst_lag_seconds": max(o["worst_lag_seconds"] for o in outcomes),
            "cores_used": {"publishers": sum(o["cores_used"] for o in outcomes), **cores},
            "batches": batches,
            "backlog_max": max((b for _, b in backlog), default=0),
            "backlog_at_send_end": backlog[-1][1] if backlog else 0,
            "backlog_growth_per_second": slope,
            "listener_backlog_max": max((s - r for _, s, r, _ in samples), default=0),
            "stream_backlog_max": max((r - e for _, _, r, e in samples), default=0),
            "drained": drained,
            "drain_seconds_after_send": drain_seconds,
            "publisher_reached_rate": achieved >= 0.95 * rate,
            "publisher_errors": sorted({o["error"] for o in outcomes if o.get("error")}),
            "sustained": achieved >= 0.95 * rate and slope <= 0.05 * rate and drained,
            "latency": latency,
            "backlog_series": [(round(t, 2), s, r, e) for t, s, r, e in samples],
        }
        LOG.info(
            "e2e %d/s (%s x%d): sent %d at %.0f/s, p50 %.1f ms p99 %.1f ms over %d events, "
            "backlog max %d growth %.0f/s, drained in %.1fs: %s",
            rate,
            mode,
            processes,
            sent,
            achieved,
            latency["ms"]["p50"],
            latency["ms"]["p99"],
            latency["events"],
            result["backlog_max"],
            slope,
            drain_seconds,
            "sustained" if result["sustained"] else "NOT sustained",
        )
        return result

    def _batch_counters(self) -> dict[str, float]:
        """Batch counts, sizes and seconds of the listener and the stream worker so far."""
        counters: dict[str, float] = {}
        for name, port, size, seconds in (
            (
                "listener",
                self.listener_port,
                "eventfed_listener_batch_size",
                "eventfed_listener_batch_duration_seconds",
            ),
            (
                "stream",
                self.stream_port,
                "eventfed_stream_batch_size",
                "eventfed_stream_batch_duration_seconds",
            ),
        ):
            try:
                text = scrape(port)
            except OSError:
                continue
            counters[f"{name}.count"] = metric_sum(text, f"{size}_count")
            counters[f"{name}.size"] = metric_sum(text, f"{size}_sum")
            counters[f"{name}.seconds"] = metric_sum(text, f"{seconds}_sum")
            if name == "listener":
                counters["listener.window"] = metric_sum(text, "eventfed_listener_batch_window_seconds")
        return counters

    def _batch_stats(self, before: dict[str, float]) -> dict[str, float]:
        """Per process, over the run: batches, mean batch size, mean seconds to handle one."""
        after = self._batch_counters()
        stats: dict[str, float] = {}
        for name in ("listener", "stream"):
            count = after.get(f"{name}.count", 0.0) - before.get(f"{name}.count", 0.0)
            if count <= 0:
                continue
            stats[f"{name}_batches"] = count
            stats[f"{name}_mean_batch"] = (after[f"{name}.size"] - before.get(f"{name}.size", 0.0)) / count
            stats[f"{name}_batch_ms"] = (
                (after[f"{name}.seconds"] - before.get(f"{name}.seconds", 0.0)) / count * 1000
            )
        if "listener.window" in after:
            stats["listener_window_ms"] = after["listener.window"] * 1000
        return stats

    def account(self) -> dict[str, Any]:
        """Sent = on the raw topic (per VM and event type); every raw message id = an event."""
        # At least: what failed publishers may never have handed over is not waited for.
        least = self.sent_total - sum(self.unsettled.values())
        wait_until(lambda: self.counts()[1] >= least, 120, 0.5)
        raw_rows = read_ids(
            self.ctx.bootstrap,
            self.topics["raw"],
            (HEADER_EVENT_TYPE, HEADER_MESSAGE_ID),
            least,
            120,
        )
        event_rows = read_ids(self.ctx.bootstrap, self.topics["events"], ("message_id",), least, 120)
        got = Counter((key, event_type) for key, event_type, _ in raw_rows)
        missing_raw = self.fingerprints - got
        # Sends of a publisher that gave up under RabbitMQ's flow control, never read by RabbitMQ.
        never_taken = missing_raw & self.unsettled
        missing_raw -= never_taken
        raw_ids = {mid for *_, mid in raw_rows}
        event_ids = {mid for _, mid in event_rows}
        metrics = scrape(self.stream_port)
        matches = metric_sum(metrics, "eventfed_stream_subscription_matches_total")
        on_subscriptions = sum(self.offsets.count(t) for t in self.formats)
        accounting = {
            "sent": self.sent_total,
            "raw_records": len(raw_rows),
            "raw_unique_message_ids": len(raw_ids),
            "missing_from_raw": sum(missing_raw.values()),
            "not_taken_by_rabbitmq_from_a_failed_publisher": sum(never_taken.values()),
            "raw_dead_lettered": self.offsets.count(self.topics["dlq"]),
            "events_records": len(event_rows),
            "events_unique_message_ids": len(event_ids),
            "raw_ids_missing_from_events": len(raw_ids - event_ids),
            "stream_ignored": metric_sum(metrics, "eventfed_stream_ignored_total"),
            "stream_dead_lettered": metric_sum(metrics, "eventfed_stream_dead_lettered_total"),
            "stream_duplicates_dropped": metric_sum(metrics, "eventfed_stream_duplicates_total"),
            "subscription_matches_counted": matches,
            "subscription_records": on_subscriptions,
            "subscription_events_read_by_bench": self.reader.read,
            "undecodable_subscription_records": self.reader.errors,
        }
        problems = []
        if accounting["missing_from_raw"] > accounting["raw_dead_lettered"]:
            problems.append(f"{accounting['missing_from_raw']} sent notifications are not on the raw topic")
        unexplained = (
            accounting["raw_ids_missing_from_events"]
            - accounting["stream_ignored"]
            - accounting["stream_dead_lettered"]
        )
        if unexplained > 0:
            problems.append(
                f"{int(unexplained)} raw records neither became events nor were filtered/dead-lettered"
            )
        if on_subscriptions < matches:
            problems.append(
                f"subscription topics hold {on_subscriptions} records, the worker matched {int(matches)}"
            )
        if problems:
            raise AccountingError("; ".join(problems) + f"; accounting {accounting}")
        return accounting

    def close(self) -> None:
        self.reader.stop()
        self.offsets.close()


def run(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    result: dict[str, Any] = {"target_p99_ms_at_1000": TARGET_P99_MS_AT_1000, "runs": []}
    with ctx.fleet() as fleet:
        pipeline = Pipeline(ctx, fleet)
        try:
            seed = 1

            def measure(rate: int, mode: str, seconds: float, series: str) -> dict[str, Any]:
                nonlocal seed
                outcome = pipeline.run_rate(rate, seconds, mode, seed)
                seed += 1
                outcome["series"] = series
                result["runs"].append(outcome)
                return outcome

            # Warm-up, not reported: the first sends to each new topic fetch metadata, Faust's
            # first batches and the reader's first fetches are slow.
            measure(200, "wire", WARM_UP_SECONDS, WARM_UP)
            result["idle"] = pipeline.idle_cores(IDLE_SECONDS_QUICK if ctx.quick else IDLE_SECONDS)
            # A. As shipped, the wire publisher (cheap, so the two cores go to eventfed): the fixed
            # rates, and steps up until the backlog grows (5,000/s is run whatever happens).
            stepping = True
            for rate in sorted({*FIXED_RATES, *sizes.e2e_steps}):
                fixed = rate in FIXED_RATES
                if not (stepping or fixed):
                    continue
                seconds = sizes.e2e_fixed_seconds if rate <= 1000 else sizes.e2e_step_seconds
                first = measure(rate, "wire", seconds, SHIPPED)
                if first["sustained"]:
                    if rate in (100, 1000) and not ctx.quick:
                        for _ in range(TARGET_RATE_RUNS - 1):
                            measure(rate, "wire", seconds, SHIPPED_REPEAT)
                    continue
                # The cores are shared with other work: a rate the pipeline nearly kept up with (the
                # backlog grew by less than half the rate) gets a second try before it counts as too high.
                close = first["publisher_reached_rate"] and first["backlog_growth_per_second"] < rate / 2
                if not (close and measure(rate, "wire", seconds, SHIPPED_RETRY)["sustained"]):
                    stepping = False
            # B. The same, published by oslo.messaging's Notifier itself (sharing the two cores).
            for rate in (100,) if ctx.quick else (100, 1000):
                measure(rate, "oslo", sizes.e2e_fixed_seconds, NOTIFIER)
            # C. The listener with a fixed batch window (settings, not a code change).
            if not ctx.quick:
                pipeline.restart_listener(**WHAT_IF_SETTINGS)
                for rate in (100, 1000):
                    measure(rate, "wire", sizes.e2e_fixed_seconds, WHAT_IF)
            try:
                result["accounting"] = pipeline.account()
            except AccountingError as exc:
                # Kept with the runs, so the report still shows them; the run fails on it.
                result["accounting_error"] = str(exc)
        finally:
            pipeline.close()
        result["listener_metrics"] = _listener_metrics(pipeline.listener_port)
    best = best_shipped_runs(result["runs"])
    highest = 0
    for rate in sorted(best):
        if not best[rate]["sustained"]:
            break
        highest = rate
    result["highest_sustained_rate"] = highest
    result["first_unsustained"] = next(
        (
            {"rate": rate, "publisher_reached_rate": best[rate]["publisher_reached_rate"]}
            for rate in sorted(best)
            if not best[rate]["sustained"]
        ),
        None,
    )
    if 1000 in best:
        result["meets_target_p99_at_1000"] = (
            best[1000]["sustained"] and best[1000]["latency"]["ms"]["p99"] <= TARGET_P99_MS_AT_1000
        )
    if 100 in best:
        result["meets_target_p99_at_100"] = best[100]["latency"]["ms"]["p99"] <= TARGET_P99_MS_AT_100
    result["meets_target_sustained"] = highest >= TARGET_SUSTAINED_PER_SECOND
    return result


def best_shipped_runs(runs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per rate, the as-shipped run that stands for it: of its sustained runs the one with the
    median p99 (the higher of the middle two), else the try with the lower p99."""
    by_rate: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        if run["series"] in (SHIPPED, SHIPPED_RETRY, SHIPPED_REPEAT):
            by_rate.setdefault(run["rate"], []).append(run)
    chosen: dict[int, dict[str, Any]] = {}
    for rate, tries in by_rate.items():
        sustained = sorted((r for r in tries if r["sustained"]), key=_p99)
        chosen[rate] = sustained[len(sustained) // 2] if sustained else min(tries, key=_p99)
    return chosen


def target_rate_p99s(runs: list[dict[str, Any]], rate: int) -> list[float]:
    """The p99 of every sustained as-shipped run at `rate`, in the order they ran."""
    return [
        _p99(run)
        for run in runs
        if run["rate"] == rate and run["sustained"] and run["series"] in (SHIPPED, SHIPPED_REPEAT)
    ]


def _p99(run: dict[str, Any]) -> float:
    return float(run["latency"]["ms"]["p99"] or 0.0)


def _listener_metrics(port: int) -> dict[str, float]:
    try:
        metrics = scrape(port)
    except OSError:
        return {}
    batches = metric_sum(metrics, "eventfed_listener_batch_size_count")
    received = metric_sum(metrics, "eventfed_listener_notifications_received_total")
    return {
        "received": received,
        "written": metric_sum(metrics, "eventfed_listener_records_written_total"),
        "batches": batches,
        "mean_batch": received / batches if batches else float("nan"),
    }
