"""eventfed's own share of `eventfed listen`: CPU time per notification from the moment oslo hands
a batch to the endpoint until it returns HANDLED, oslo's receive path and Kafka's waits left out.

    python -m bench.listener_share [--notifications N] [--batches 33,500] [--rounds R] [--bootstrap B]

Runs in a process of its own (so no other Python thread shares it): the real
NotificationEndpoint, KafkaBatchWriter and producer (the listener's settings, a topic of 8
partitions of its own on the real Kafka) over N simulated Nova notifications, each decoded by
oslo.messaging's own code from the Notifier 2.0 envelope into the dict a batch endpoint receives,
handed over in batches of each size. Counted: `time.thread_time()` of the calling thread around
`handle()` (record building, packing, produce calls, delivery callbacks, metrics); a thread
blocked in `flush()` waiting for Kafka uses none. librdkafka's own threads (protocol, compression,
sockets) are not eventfed's code: their CPU is reported apart, as the process's CPU minus the
calling thread's. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

TARGET_US = 50.0
PARTITIONS = 8


def oslo_messages(n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """(priority, message dict) pairs as oslo's batch dispatcher builds them from the wire: the
    2.0 envelope's body decoded, its context unpacked, the user message extracted."""
    from oslo_messaging._drivers import amqp as rpc_amqp
    from oslo_messaging._drivers import common
    from oslo_messaging.notify.dispatcher import NotificationDispatcher

    from bench import amqputil
    from bench.publish import notes_for
    from bridge.listener import oslo_internals

    incoming = []
    for note in notes_for(n, seed):
        body = amqputil.envelope(amqputil.prepare(note), amqputil.nova_now(), str(uuid.uuid4()))
        message = common.deserialize_msg(json.loads(body))
        context = rpc_amqp.unpack_context(message)
        incoming.append(SimpleNamespace(ctxt=context.to_dict(), message=message))
    return oslo_internals.user_messages(NotificationDispatcher([], None), incoming)


def _batches(messages: list[tuple[str, dict[str, Any]]], size: int) -> list[list[tuple[str, dict[str, Any]]]]:
    return [messages[i : i + size] for i in range(0, len(messages), size)]


def _pass(endpoint: Any, batches: list[list[tuple[str, dict[str, Any]]]], handled: Any) -> dict[str, float]:
    """One pass over the batches: the calling thread's CPU, the process's, and the wall time."""
    own = 0.0
    process_started = time.process_time()
    wall_started = time.perf_counter()
    for batch in batches:
        started = time.thread_time()
        outcome = endpoint.handle(batch)
        own += time.thread_time() - started
        if outcome is not handled:
            raise RuntimeError(f"the endpoint did not handle a batch of {len(batch)}: {outcome}")
    return {
        "own": own,
        "process": time.process_time() - process_started,
        "wall": time.perf_counter() - wall_started,
    }


def _parts(
    messages: list[tuple[str, dict[str, Any]]], settings: Any, partitions: int, rounds: int
) -> dict[str, float]:
    """The pure steps alone, no Kafka, in batches of 500 as the endpoint does them: µs per
    notification of building the raw records and of packing them (median of `rounds` passes), so
    the endpoint's figure can be split."""
    from datetime import UTC, datetime

    from bridge.kafka_config import KeyPartitioner
    from schemas.raw import RawRecord, build_raw_record, pack

    partitioner = KeyPartitioner(partitions)
    built: list[float] = []
    packed: list[float] = []
    for _ in range(rounds):
        building = packing = 0.0
        for batch in _batches(messages, 500):
            received_at = datetime.now(UTC)
            started = time.thread_time()
            records = [
                build_raw_record(m, p, settings.vim_id, received_at, settings.max_message_bytes)
                for p, m in batch
            ]
            building += time.thread_time() - started
            raw = [r for r in records if isinstance(r, RawRecord)]
            started = time.thread_time()
            pack(raw, partitioner, settings.pack_max, settings.max_message_bytes)
            packing += time.thread_time() - started
        built.append(building / len(messages) * 1e6)
        packed.append(packing / len(messages) * 1e6)
    return {"build_raw_record_us": statistics.median(built), "pack_us": statistics.median(packed)}


def measure(
    bootstrap: str, topic_prefix: str, n: int, batch_sizes: Sequence[int], rounds: int
) -> dict[str, Any]:
    import oslo_messaging
    from confluent_kafka import Producer

    from bench.context import VIM_ID
    from bench.kafkautil import create_topics
    from bridge.gc_thresholds import settle_after_start_up
    from bridge.kafka_config import confirmed_producer_config
    from bridge.listener.endpoint import NotificationEndpoint
    from bridge.raw_writer import KafkaBatchWriter
    from bridge.settings import ListenerSettings

    raw_topic, dlq_topic = f"{topic_prefix}raw", f"{topic_prefix}dlq"
    create_topics(bootstrap, [raw_topic, dlq_topic], PARTITIONS)
    settings = ListenerSettings(
        transport_url="rabbit://guest:guest@127.0.0.1:5672/",
        vim_id=VIM_ID,
        kafka_bootstrap_servers=bootstrap,
        raw_topic=raw_topic,
        dlq_topic=dlq_topic,
    )
    # As bridge.listener.service.Listener makes them.
    producer = Producer(
        confirmed_producer_config(settings, f"listen-{settings.vim_id}", settings.delivery_timeout)
    )
    writer = KafkaBatchWriter.from_settings(producer, settings)
    endpoint = NotificationEndpoint(settings, writer, threading.Event(), None)
    handled = oslo_messaging.NotificationResult.HANDLED
    messages = oslo_messages(n, seed=103)
    # Warm-up: the broker connection, the partition count, the first allocations; not counted.
    _pass(endpoint, _batches(messages[:1000], 100), handled)
    settle_after_start_up()  # the listener tunes the collector once started, so does this

    per_size: dict[str, Any] = {}
    runs: dict[int, list[dict[str, float]]] = {size: [] for size in batch_sizes}
    for _ in range(rounds):
        for size in batch_sizes:  # alternated, so a busy moment of the shared machine hits all
            runs[size].append(_pass(endpoint, _batches(messages, size), handled))
    for size, passes in runs.items():
        own = [p["own"] / n * 1e6 for p in passes]
        others = [(p["process"] - p["own"]) / n * 1e6 for p in passes]
        per_size[str(size)] = {
            "own_us_per_notification": statistics.median(own),
            "own_us_rounds": own,
            "librdkafka_threads_us_per_notification": statistics.median(others),
            "wall_us_per_notification": statistics.median(p["wall"] / n * 1e6 for p in passes),
        }
    sizes = [str(size) for size in batch_sizes]
    worst = max(per_size[s]["own_us_per_notification"] for s in sizes)
    return {
        "notifications": n,
        "rounds": rounds,
        "mean_message_bytes": statistics.fmean(len(json.dumps(m)) for _, m in messages),
        "batches": per_size,
        "parts": _parts(messages, settings, PARTITIONS, rounds),
        "target_us": TARGET_US,
        "meets_target": worst <= TARGET_US,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.listener_share", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--notifications", type=int, default=20_000)
    parser.add_argument("--batches", default="33,500", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic-prefix", default="", help="default: a unique bench.share.<id>.")
    args = parser.parse_args(argv)
    prefix = args.topic_prefix or f"bench.share.{uuid.uuid4().hex[:8]}."
    sizes = [int(s) for s in args.batches.split(",") if s.strip()]
    try:
        result = measure(args.bootstrap, prefix, args.notifications, sizes, args.rounds)
    finally:
        if not args.topic_prefix:
            from bench.kafkautil import delete_topics_with_prefixes

            delete_topics_with_prefixes(args.bootstrap, [prefix])
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
