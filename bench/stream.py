"""Stream: events/s from a pre-filled raw topic through one `eventfed stream` worker.

The raw topic is filled with simulated Nova lifecycles as the listener writes them
(`bridge.novasim.raw_record`), the worker runs the example subscriptions (topics renamed for the
run), and its rate comes from its own counter `eventfed_stream_events_total` sampled over time.
Baseline in the same run, on the same records, before and after the worker: a plain
confluent-kafka loop (consume 500, json.loads, produce one record each with eventfed's producer
settings, flush, commit). The same records also go through `streams.pipeline.Processor.process`
in this process: that gives the count each output topic must end with, the single-core ceiling
of the pure logic, and a cProfile of it.
"""

from __future__ import annotations

import cProfile
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench import profiles
from bench.context import ROOT, VIM_ID, AccountingError, Context, cpu_from_samples, rate_from_samples
from bench.kafkautil import Offsets, create_topics, produce_raw_records
from bench.procs import cpu_seconds, free_port, metric_sum, scrape, wait_until
from bench.publish import notes_for
from bridge.kafka_config import consumer_config, producer_config
from bridge.settings import CommonSettings
from bridge.simulator.novasim import raw_record
from schemas.raw import documents
from streams import pipeline
from streams.subscriptions import load_subscriptions

TARGET_PER_SECOND = 10_000.0
TARGET_RATIO = 0.6

Record = tuple[bytes, bytes, str, str]

# Where Processor.process spends its time (cumulative), and the worker around it.
PROCESS_PARTS = [
    "streams/pipeline.py:process",
    "json/__init__.py:loads",
    "streams/normalise.py:normalise",
    "streams/codecs.py:event_to_json_dict",
    "streams/pipeline.py:_publish",
    "streams/codecs.py:encode_avro",
    "streams/codecs.py:encode_json",
]
WORKER_PARTS = [
    *PROCESS_PARTS,
    "streams/runner.py:handle_batch",
    "streams/runner.py:write_all",
    "streams/codecs.py:encode_json_dict",
    "faust/transport/consumer.py:_drain_messages",
    "faust/transport/conductor.py:on_message",
    "faust/streams.py:_c_aiter",
    "aiokafka/producer/producer.py:send",
    "aiokafka/partitioner.py:murmur2",
]


def make_records(n: int, seed: int) -> list[Record]:
    """(key, value, event_type, message_id) of `n` raw records of interleaved VM lifecycles."""
    base = datetime.now(UTC)
    records = []
    for number, note in enumerate(notes_for(n, seed)):
        message_id = str(uuid.UUID(int=(seed << 64) + number))
        value = raw_record(note, VIM_ID, base + timedelta(microseconds=10 * number), message_id)
        records.append((note.instance_id.encode(), json.dumps(value).encode(), note.event_type, message_id))
    return records


def run(ctx: Context) -> dict[str, Any]:
    n = ctx.sizes.stream_records
    topics = ctx.topics("stream")
    subscriptions_file, formats = ctx.subscriptions("stream")
    create_topics(ctx.bootstrap, [topics["raw"]], 8)
    records = make_records(n, seed=202)
    result: dict[str, Any] = {
        "records": n,
        "mean_raw_record_bytes": sum(len(r[1]) for r in records) / n,
        "subscriptions": sorted(formats),
        "target_per_second": TARGET_PER_SECOND,
        "target_ratio": TARGET_RATIO,
        "prefill_seconds": produce_raw_records(ctx.bootstrap, topics["raw"], records, VIM_ID),
    }
    expected, in_process = _in_process(records, topics, subscriptions_file.read_text())
    result["in_process"] = in_process
    result["contract_microbench"] = _contract(ctx.sizes.contract_iterations)

    offsets = Offsets(ctx.bootstrap)
    try:
        plain = [_plain_loop(ctx, topics["raw"], f"{ctx.prefix}stream.plain-{i}", n, offsets) for i in (1, 2)]
        result["plain_loop"] = {
            "runs": plain,
            "per_second": sum(p["per_second"] for p in plain) / len(plain),
            "cpu_us_per_record": sum(p["cpu_us_per_record"] for p in plain) / len(plain),
        }
        result["worker"] = _worker(ctx, topics, subscriptions_file, n, offsets)
        result["accounting"] = _account(topics, formats, expected, offsets, n, result["worker"])
    finally:
        offsets.close()
    rate = result["worker"]["per_second"]
    result["ratio_to_plain_loop"] = rate / result["plain_loop"]["per_second"]
    result["ratio_to_in_process"] = rate / in_process["per_second"]
    result["meets_target_ratio"] = result["ratio_to_plain_loop"] >= TARGET_RATIO
    result["meets_target_absolute"] = rate >= TARGET_PER_SECOND
    if not (result["meets_target_ratio"] and result["meets_target_absolute"]):
        result["worker_profile"] = _profile_worker(ctx, topics["raw"], min(n, 20_000))
    return result


def _profile_worker(ctx: Context, raw_topic: str, records: int) -> dict[str, Any]:
    """A second worker (its own group and output topics) on the same raw topic, under cProfile,
    stopped after `records` events; where the live worker spends its time."""
    topics = {**ctx.topics("stream-profile"), "raw": raw_topic}
    subscriptions_file, _ = ctx.subscriptions("stream-profile")
    output = ctx.log_dir / "stream-worker.prof"
    with ctx.fleet() as fleet:
        port = free_port()
        worker = fleet.start(
            "stream/worker (profiled)",
            ["stream"],
            ctx.stream_env("stream-profile", topics, subscriptions_file, port),
            profile_to=output,
        )
        counted = 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and worker.alive() and counted < records:
            time.sleep(0.5)
            try:
                counted = int(metric_sum(scrape(port), "eventfed_stream_events_total"))
            except OSError:
                continue
        fleet.stop(worker)
    if not output.exists():
        return {"error": f"no profile written; see {worker.log_path}"}
    return {
        "events_profiled": counted,
        **profiles.summarise(output, 15),
        "cumulative": profiles.cumulative(output, WORKER_PARTS),
    }


def _in_process(
    records: list[Record], topics: dict[str, str], subscriptions_text: str, profile_rows: int = 18
) -> tuple[Counter[str], dict[str, Any]]:
    subscriptions = load_subscriptions(subscriptions_text)

    def one_pass() -> tuple[Counter[str], Counter[str]]:
        processor = pipeline.Processor(
            pipeline.Topics(events=topics["events"], dlq=topics["dlq"]), lambda: subscriptions, 600.0
        )
        state: dict[bytes, Mapping[str, Any]] = {}
        outputs: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        now = time.time()
        for offset, (key, value, _, _) in enumerate(records):
            source = pipeline.Source(topics["raw"], 0, offset)
            outcome = processor.process(key, value, source, state.get, now)
            kinds[outcome.kind] += 1
            for output in outcome.outputs:
                outputs[output.topic] += 1
            if outcome.new_state is not None and outcome.state_key is not None:
                state[outcome.state_key] = outcome.new_state
        return outputs, kinds

    started = time.perf_counter()
    outputs, kinds = one_pass()
    seconds = time.perf_counter() - started
    profiler = cProfile.Profile()
    profiler.enable()
    one_pass()
    profiler.disable()
    return outputs, {
        "per_second": len(records) / seconds,
        "microseconds_per_record": seconds / len(records) * 1e6,
        "outcomes": dict(kinds),
        "outputs": dict(outputs),
        "profile": profiles.summarise(profiler, profile_rows),
        "profile_cumulative": _cumulative(profiler, PROCESS_PARTS),
    }


def _cumulative(profiler: cProfile.Profile, names: list[str]) -> dict[str, dict[str, float]]:
    path = Path(tempfile.mkstemp(suffix=".prof")[1])
    try:
        profiler.dump_stats(str(path))
        return profiles.cumulative(path, names)
    finally:
        path.unlink(missing_ok=True)


def _contract(iterations: int) -> dict[str, Any]:
    """The colleagues' micro-benchmark of json.loads + normalise + Avro encode, per event."""
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_contract.py"), "--iterations", str(iterations)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    if completed.returncode != 0:
        return {"error": completed.stderr[-500:]}
    data = json.loads(completed.stdout)
    return {
        "median_us": data["median_us"],
        "p99_us": data["p99_us"],
        "steps_median_us": data["steps_median_us"],
        "iterations": iterations,
    }


def _plain_loop(ctx: Context, raw_topic: str, out_topic: str, n: int, offsets: Offsets) -> dict[str, Any]:
    """consume -> json.loads -> produce -> flush -> commit, at least once, one process; one
    output record per notification, packed raw records split as the worker splits them."""
    create_topics(ctx.bootstrap, [out_topic], 8)
    settings = CommonSettings(kafka_bootstrap_servers=ctx.bootstrap)
    consumer = Consumer(
        consumer_config(
            settings, "bench-plain", f"{ctx.prefix}plain.{out_topic[-1]}", **{"fetch.wait.max.ms": 50}
        )
    )
    producer = Producer(producer_config(settings, "bench-plain"))
    done = 0
    first = last = 0.0
    cpu_before = cpu_seconds()
    try:
        partitions = offsets.partitions(raw_topic)
        consumer.assign([TopicPartition(raw_topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + 120
        while done < n and time.monotonic() < deadline:
            batch = consumer.consume(500, 0.5)
            if not batch:
                continue
            if not first:
                first = time.perf_counter()
            for message in batch:
                if message.error() is not None:
                    continue
                for line in documents(message.value() or b"null", message.headers()):
                    document = json.loads(line)
                    while True:
                        try:
                            producer.produce(
                                out_topic, key=message.key(), value=json.dumps(document).encode()
                            )
                            break
                        except BufferError:
                            producer.poll(0.05)
                    done += 1
                consumer.store_offsets(message=message)
            if producer.flush(30):
                raise AccountingError("the plain loop baseline could not deliver its records")
            consumer.commit(asynchronous=False)
            last = time.perf_counter()
    finally:
        consumer.close()
    written = offsets.count(out_topic)
    if written != n:
        raise AccountingError(f"the plain loop baseline wrote {written} of {n} records")
    seconds = last - first
    cpu = cpu_seconds() - cpu_before
    return {
        "records": done,
        "seconds": seconds,
        "per_second": done / seconds,
        "cpu_us_per_record": cpu / done * 1e6,
    }


def _worker(
    ctx: Context, topics: dict[str, str], subscriptions_file: Any, n: int, offsets: Offsets
) -> dict[str, Any]:
    with ctx.fleet() as fleet:
        port = free_port()
        started = time.monotonic()
        worker = fleet.start(
            "stream/worker", ["stream"], ctx.stream_env("stream", topics, subscriptions_file, port)
        )
        samples: list[tuple[float, int, float]] = []
        metrics = ""
        deadline = started + 120 + n / 500
        while time.monotonic() < deadline and worker.alive():
            try:
                metrics = scrape(port)
            except OSError:
                time.sleep(0.2)
                continue
            count = int(metric_sum(metrics, "eventfed_stream_events_total"))
            samples.append((time.monotonic(), count, cpu_seconds(worker.pid)))
            if count >= n:
                break
            time.sleep(0.25)
        if not samples or samples[-1][1] < n:
            raise RuntimeError(
                f"the stream worker handled {samples[-1][1] if samples else 0} of {n} records in time "
                f"(alive: {worker.alive()}); see {worker.log_path}"
            )
        first_progress = next(t for t, c, _ in samples if c > 0)
        batches = metric_sum(metrics, "eventfed_stream_batch_size_count")
        result = {
            **rate_from_samples([(t, c) for t, c, _ in samples], n),
            **cpu_from_samples(samples, n),
            "startup_seconds": first_progress - started,
            "events_counted": samples[-1][1],
            "mean_batch": metric_sum(metrics, "eventfed_stream_batch_size_sum") / batches
            if batches
            else None,
            "batch_seconds_mean": metric_sum(metrics, "eventfed_stream_batch_duration_seconds_sum") / batches
            if batches
            else None,
            "progress": [(round(t - started, 2), c) for t, c, _ in samples],
        }
        # Outputs are confirmed before the counter moves, but let the last batch's state land.
        wait_until(lambda: offsets.count(topics["events"]) >= n, 30, 0.5)
        result["metrics_at_end"] = {
            name: metric_sum(metrics, name)
            for name in (
                "eventfed_stream_dead_lettered_total",
                "eventfed_stream_duplicates_total",
                "eventfed_stream_stale_total",
                "eventfed_stream_ignored_total",
                "eventfed_stream_subscription_matches_total",
            )
        }
    return result


def _account(
    topics: dict[str, str],
    formats: dict[str, str],
    expected: Counter[str],
    offsets: Offsets,
    n: int,
    worker: dict[str, Any],
) -> dict[str, Any]:
    """Each output topic holds what the same records give in-process (no more: no duplicates)."""
    wanted = {topics["events"]: expected[topics["events"]], topics["dlq"]: expected[topics["dlq"]]}
    wanted.update({topic: expected[topic] for topic in formats})
    got: dict[str, int] = {}
    wait_until(lambda: all(offsets.count(t) >= c for t, c in wanted.items()), 30, 0.5)
    for topic in wanted:
        got[topic] = offsets.count(topic)
    short = {t: (got[t], c) for t, c in wanted.items() if got[t] < c}
    accounting = {
        "raw_records": n,
        "events_counted_by_worker": worker["events_counted"],
        "expected": wanted,
        "written": got,
        "ignored": worker["metrics_at_end"]["eventfed_stream_ignored_total"],
        "dead_lettered": worker["metrics_at_end"]["eventfed_stream_dead_lettered_total"],
    }
    if short:
        raise AccountingError(f"stream outputs are short (written, expected): {short}")
    return accounting
