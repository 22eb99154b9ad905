"""Ingest: notifications/s from a pre-filled RabbitMQ queue into the raw topic, one `eventfed listen`.

The listener is started once to declare its pooled queue and stopped; one publish through `nova`
then fills that queue and two baseline queues bound the same way with the same notifications.
Baselines, drained in the same run: a bare py-amqp consumer (prefetch 1,000, decode both JSON
layers, ack each 500 at once), and a bare bridge (the same plus a confluent-kafka produce of each
message with eventfed's producer settings and a flush before each ack).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from confluent_kafka import Producer

from bench import amqputil, profiles
from bench.context import VIM_ID, AccountingError, Context, cpu_from_samples, rate_from_samples
from bench.kafkautil import Offsets, create_topics, read_ids
from bench.procs import ROOT, clean_env, cpu_seconds, free_port, metric_sum, scrape, wait_http, wait_until
from bench.publish import notes_for
from bridge.kafka_config import producer_config
from bridge.settings import CommonSettings
from schemas.raw import HEADER_EVENT_TYPE, HEADER_MESSAGE_ID, record_key

LOG = logging.getLogger(__name__)

TARGET_PER_SECOND = 5000.0
TARGET_RATIO_TO_BARE_BRIDGE = 0.6
# Listeners on one pooled queue in the scale-out measurement.
REPLICAS = 2
# eventfed's own share: the bench's mean listener batch, and the configured batch_size.
OWN_SHARE_BATCHES = (33, 500)
# Where the listener's time goes (cumulative): oslo's poll and dispatch, eventfed's batch handling
# (whose cumulative time includes the wall time of the flush waiting for Kafka: see own_share).
LISTENER_PARTS = [
    "bridge/listener/endpoint.py:handle",
    "bridge/listener/endpoint.py:dispatch",
    "schemas/raw.py:build_raw_record",
    "bridge/raw_writer.py:write",
    "oslo_messaging/_drivers/amqpdriver.py:poll",
    "oslo_messaging/_drivers/amqpdriver.py:acknowledge",
    "oslo_messaging/_drivers/impl_rabbit.py:consume",
    "oslo_messaging/_drivers/common.py:deserialize_msg",
    "oslo_messaging/notify/dispatcher.py:_extract_user_message",
    "kombu/messaging.py:_receive_callback",
]


def run(ctx: Context) -> dict[str, Any]:
    n = ctx.sizes.ingest_notifications
    topics = ctx.topics("ingest")
    pool = f"{ctx.prefix}ingest.pool"
    bare_queue = f"{ctx.prefix}ingest.bare"
    bridge_queue = f"{ctx.prefix}ingest.bridge"
    bridge_topic = f"{ctx.prefix}ingest.bridge-out"
    create_topics(ctx.bootstrap, [bridge_topic], 8)
    result: dict[str, Any] = {"notifications": n, "target_per_second": TARGET_PER_SECOND}

    with ctx.fleet() as fleet:
        # 1. Let the listener declare its queue as oslo does, then stop it.
        port = free_port()
        env = ctx.listener_env(pool, topics["raw"], topics["dlq"], port)
        declaring = fleet.start("ingest/listener", ["listen"], env)
        wait_http(f"http://127.0.0.1:{port}/readyz", 60, declaring)
        if not wait_until(lambda: amqputil.queue_exists(ctx.vhost, pool), 60, 0.5):
            raise RuntimeError(f"the listener did not declare queue {pool}")
        fleet.stop(declaring)

        # 2. One publish fills the pool queue and both baseline queues.
        connection = amqputil.connect(ctx.vhost)
        try:
            channel = connection.channel()
            for queue in (bare_queue, bridge_queue):
                amqputil.declare_pool_queue(channel, queue)
        finally:
            connection.close()
        notes = notes_for(n, seed=101)
        result["prefill"] = amqputil.prefill(ctx.vhost, [pool, bare_queue, bridge_queue], notes, 120)

        # 3. Baselines.
        result["bare_consumer"] = amqputil.drain(
            ctx.vhost, bare_queue, n, prefetch=1000, batch=500, timeout=120
        )
        result["bare_bridge"] = _bare_bridge(ctx, bridge_queue, bridge_topic, n)
        for name in ("bare_consumer", "bare_bridge"):
            if result[name]["messages"] != n:
                raise AccountingError(f"ingest baseline {name} drained {result[name]['messages']} of {n}")

        # 4. The listener on the pre-filled queue, timed by its count of notifications written.
        offsets = Offsets(ctx.bootstrap)
        try:
            port = free_port()
            started = time.monotonic()
            listener = fleet.start(
                "ingest/listener", ["listen"], ctx.listener_env(pool, topics["raw"], topics["dlq"], port)
            )
            samples: list[tuple[float, int, float]] = []
            deadline = started + max(120.0, n / 500)
            count = 0
            while time.monotonic() < deadline:
                count = written_by(port, count)
                samples.append((time.monotonic(), count, cpu_seconds(listener.pid)))
                if count >= n or not listener.alive():
                    break
                time.sleep(0.1)
            done_at = samples[-1][0]
            result["listener"] = {
                **rate_from_samples([(t, c) for t, c, _ in samples], n),
                **cpu_from_samples(samples, n),
                "from_process_start_seconds": done_at - started,
                "from_process_start_per_second": n / (done_at - started),
                "progress": _thin(samples, started),
            }
            time.sleep(1.0)
            metrics = scrape(port)
            received = metric_sum(metrics, "eventfed_listener_notifications_received_total")
            batches = metric_sum(metrics, "eventfed_listener_batch_size_count")
            result["listener"].update(
                received=received,
                written=metric_sum(metrics, "eventfed_listener_records_written_total"),
                mean_batch=received / batches if batches else float("nan"),
                batch_seconds_mean=metric_sum(metrics, "eventfed_listener_batch_duration_seconds_sum")
                / batches
                if batches
                else float("nan"),
            )
            result["accounting"] = _account(ctx, notes, topics, pool, offsets)
            fleet.stop(listener)
            result["replicas"] = _replicas(ctx, fleet, pool, offsets, n)
            rate = result["listener"]["per_second"]
            if rate < TARGET_PER_SECOND:
                result["listener_profile"] = _profile_listener(
                    ctx, fleet, pool, topics, offsets, min(n, 20_000)
                )
        finally:
            offsets.close()
    result["own_share"] = own_share(ctx, 2_000 if ctx.quick else 20_000, 1 if ctx.quick else 3)
    bare = result["bare_consumer"]["per_second"]
    result["ratio_to_bare_consumer"] = rate / bare if bare else float("nan")
    result["ratio_to_bare_bridge"] = rate / result["bare_bridge"]["per_second"]
    result["meets_target"] = rate >= TARGET_PER_SECOND
    result["meets_target_ratio"] = result["ratio_to_bare_bridge"] >= TARGET_RATIO_TO_BARE_BRIDGE
    return result


def _replicas(ctx: Context, fleet: Any, pool: str, offsets: Offsets, n: int) -> dict[str, Any]:
    """Two listeners of one VIM on the same pooled queue (the scale-out path): RabbitMQ hands each
    its share of the same pre-filled notifications; timed by the sum of their counters."""
    topics = ctx.topics("ingest-replicas")
    notes = notes_for(n, seed=104)
    amqputil.prefill(ctx.vhost, [pool], notes, 120)
    ports = [free_port() for _ in range(REPLICAS)]
    started = time.monotonic()
    listeners = [
        fleet.start(
            f"ingest/listener replica {i + 1}",
            ["listen"],
            ctx.listener_env(pool, topics["raw"], topics["dlq"], port),
        )
        for i, port in enumerate(ports)
    ]
    samples: list[tuple[float, int, float]] = []
    counts = [0] * REPLICAS
    deadline = started + max(120.0, n / 500)
    while time.monotonic() < deadline:
        counts = [written_by(port, count) for port, count in zip(ports, counts, strict=True)]
        samples.append((time.monotonic(), sum(counts), sum(cpu_seconds(p.pid) for p in listeners)))
        if sum(counts) >= n or not all(p.alive() for p in listeners):
            break
        time.sleep(0.1)
    accounting = _account(ctx, notes, topics, pool, offsets)
    for listener in listeners:
        fleet.stop(listener)
    return {
        "replicas": REPLICAS,
        **rate_from_samples([(t, c) for t, c, _ in samples], n),
        **cpu_from_samples(samples, n),
        "written_each": counts,
        "accounting": accounting,
    }


def own_share(ctx: Context, n: int, rounds: int) -> dict[str, Any]:
    """bench.listener_share in a process of its own (no other Python thread in it)."""
    command = [
        sys.executable,
        "-m",
        "bench.listener_share",
        f"--notifications={n}",
        f"--rounds={rounds}",
        f"--batches={','.join(str(size) for size in OWN_SHARE_BATCHES)}",
        f"--bootstrap={ctx.bootstrap}",
        f"--topic-prefix={ctx.prefix}ingest.share.",
    ]
    done = subprocess.run(command, env=clean_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    (ctx.log_dir / "ingest-own-share.log").write_text(done.stderr)
    if done.returncode != 0:
        return {"error": f"bench.listener_share exited {done.returncode}: {done.stderr.strip()[-300:]}"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def written_by(port: int, last: int) -> int:
    """Notifications a listener has written to the raw topic: its own counter, since the raw
    topic packs several in a record; `last` while its metrics do not answer."""
    try:
        return int(metric_sum(scrape(port), "eventfed_listener_records_written_total"))
    except OSError:
        return last


def _profile_listener(
    ctx: Context, fleet: Any, pool: str, topics: dict[str, str], offsets: Offsets, count: int
) -> dict[str, Any]:
    """The listener again, under cProfile (all threads), draining `count` pre-filled notifications."""
    amqputil.prefill(ctx.vhost, [pool], notes_for(count, seed=102), 120)
    output = ctx.log_dir / "ingest-listener.prof"
    port = free_port()
    listener = fleet.start(
        "ingest/listener (profiled)",
        ["listen"],
        ctx.listener_env(pool, topics["raw"], topics["dlq"], port),
        profile_to=output,
    )
    wait_until(lambda: written_by(port, 0) >= count or not listener.alive(), 120, 0.25)
    profiled = written_by(port, 0)
    fleet.stop(listener)
    if not output.exists():
        return {"error": f"no profile written; see {listener.log_path}"}
    return {
        "notifications_profiled": profiled,
        **profiles.summarise(output, 15),
        "cumulative": profiles.cumulative(output, LISTENER_PARTS),
    }


def _bare_bridge(ctx: Context, queue: str, topic: str, n: int) -> dict[str, Any]:
    producer = Producer(
        producer_config(CommonSettings(kafka_bootstrap_servers=ctx.bootstrap), "bench-bridge")
    )
    failures: list[str] = []

    def on_delivery(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    def forward(messages: list[dict[str, Any]]) -> None:
        for message in messages:
            key = record_key(message.get("event_type"), message.get("payload"), message.get("publisher_id"))
            value = json.dumps({"vim_id": VIM_ID, **message}, separators=(",", ":")).encode()
            while True:
                try:
                    producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
        if producer.flush(30):
            failures.append("records unconfirmed after flush")

    result = amqputil.drain(ctx.vhost, queue, n, prefetch=1000, batch=500, timeout=120, forward=forward)
    if failures:
        raise AccountingError(f"the bare bridge baseline lost records: {failures[:3]}")
    return result


def _account(
    ctx: Context, notes: list[Any], topics: dict[str, str], pool: str, offsets: Offsets
) -> dict[str, Any]:
    """Every notification published is on the raw topic (per VM and event type) or dead-lettered,
    and the queue is empty."""
    n = len(notes)
    rows = read_ids(ctx.bootstrap, topics["raw"], (HEADER_EVENT_TYPE, HEADER_MESSAGE_ID), n, 120)
    sent = Counter((note.instance_id, note.event_type) for note in notes)
    got = Counter((key, event_type) for key, event_type, _ in rows)
    missing = sent - got
    dead = offsets.count(topics["dlq"])
    connection = amqputil.connect(ctx.vhost)
    try:
        left_in_queue = amqputil.queue_depth(connection.channel(), pool)
    finally:
        connection.close()
    accounting = {
        "sent": n,
        "raw_records": len(rows),
        "unique_message_ids": len({mid for *_, mid in rows}),
        "dead_lettered": dead,
        "missing": sum(missing.values()),
        "duplicates": len(rows) - len({mid for *_, mid in rows}),
        "left_in_queue": left_in_queue,
    }
    if missing and sum(missing.values()) > dead:
        example = next(iter(missing))
        raise AccountingError(
            f"ingest lost {sum(missing.values())} of {n} notifications (e.g. {example}); "
            f"accounting {accounting}"
        )
    return accounting


def _thin(
    samples: list[tuple[float, int, float]], started: float, points: int = 60
) -> list[tuple[float, int]]:
    step = max(1, len(samples) // points)
    return [(round(t - started, 2), c) for t, c, _ in samples[::step]] + [
        (round(samples[-1][0] - started, 2), samples[-1][1])
    ]
