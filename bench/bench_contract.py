"""Micro-benchmark of the contract's hot path, per event: json.loads of the raw record, normalise,
Avro single-object encoding.

    .venv/bin/python bench/bench_contract.py [--iterations N] [--sample PATH]

Prints one JSON object: median and p99 microseconds per event over N timed events (each timed on
its own with perf_counter_ns, after a warm-up), the median of each step alone, and the machine.
The input is a real legacy Nova notification (Ceilometer's compute.instance.create.end sample,
about 1.5 KB) wrapped in the raw record the ingest stage writes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_model  # noqa: E402
from schemas.raw import raw_document  # noqa: E402
from streams.codecs import encode_avro  # noqa: E402
from streams.normalise import normalise  # noqa: E402

DEFAULT_SAMPLE = (
    ROOT / "tests" / "fixtures" / "nova" / "legacy" / "compute.instance.create.end__ceilometer.json"
)
TARGET_MEDIAN_US = 20.0


def raw_record(sample: Path) -> bytes:
    notification = json.loads(sample.read_text(encoding="utf-8"))
    record = raw_document(
        vim_id="bench-owner_region-one",
        received_at=datetime(2026, 11, 25, 15, 0, 0, 123456, tzinfo=UTC),
        event_type=notification.get("event_type"),
        publisher_id=notification.get("publisher_id"),
        priority=notification.get("priority") or "INFO",
        payload=notification.get("payload"),
        message_id=notification.get("message_id"),
        timestamp=notification.get("timestamp"),
    )
    return json.dumps(record).encode()


def time_each(step: Callable[[], Any], iterations: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = [0] * iterations
    for i in range(iterations):
        started = clock()
        step()
        samples[i] = clock() - started
    return samples


def summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "median_us": round(statistics.median(ordered) / 1000, 2),
        "p99_us": round(ordered[int(len(ordered) * 0.99) - 1] / 1000, 2),
        "mean_us": round(statistics.fmean(ordered) / 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100_000)
    parser.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE)
    args = parser.parse_args()

    data = raw_record(args.sample)
    loads = json.loads

    def whole() -> bytes:
        event = normalise(loads(data))
        assert event is not None
        return encode_avro(event)

    raw = loads(data)
    event = normalise(raw)
    assert event is not None
    encoded = encode_avro(event)

    load_before = os.getloadavg()[0]
    time_each(whole, min(5_000, args.iterations))
    gc.collect()
    total = time_each(whole, args.iterations)
    steps = {
        "json_loads": time_each(lambda: loads(data), args.iterations // 4),
        "normalise": time_each(lambda: normalise(raw), args.iterations // 4),
        "encode_avro": time_each(lambda: encode_avro(event), args.iterations // 4),
        "timer_overhead": time_each(lambda: None, args.iterations // 4),
    }
    result = {
        "benchmark": "json.loads + normalise + Avro single-object encode, per event",
        "input": {
            "sample": str(args.sample.relative_to(ROOT) if args.sample.is_relative_to(ROOT) else args.sample),
            "raw_record_bytes": len(data),
            "encoded_bytes": len(encoded),
        },
        "iterations": args.iterations,
        **summary(total),
        "target_median_us": TARGET_MEDIAN_US,
        "meets_target": statistics.median(total) / 1000 <= TARGET_MEDIAN_US,
        "steps_median_us": {name: summary(samples)["median_us"] for name, samples in steps.items()},
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(),
            "load_average_1m_before": round(load_before, 2),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
