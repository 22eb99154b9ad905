"""Run an `eventfed` subcommand counting the requests its Kafka clients send; the counts go to a
JSON file every second.

    python -m bench.kafka_requests_internals OUTPUT.json listen|stream ...

Two kinds of client send to Kafka: librdkafka (confluent-kafka's Producer and Consumer, the
listener's and the worker's writers) reports its requests per broker and API in its statistics
(`statistics.interval.ms`, the `brokers.*.req` object); aiokafka (Faust's consumer and producer:
the worker's fetches, offset commits and heartbeats) has no statistics, so its client's `send`
is wrapped to count requests by their API name. Both are library internals, hence this module's
name; checked against confluent-kafka 2.16 and aiokafka 0.14. The file holds cumulative counts
per API (`Produce`, `OffsetCommit`, `Fetch`, `Heartbeat`, `Metadata`, ...) and the wall time it
was written at; a reader takes the difference of two readings.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

STATISTICS_INTERVAL_MS = 1000

# librdkafka's latest cumulative counts per client (id(client) -> API -> requests).
_librdkafka: dict[int, Counter[str]] = {}
_aiokafka: Counter[str] = Counter()
_lock = threading.Lock()


def librdkafka_counts(key: int, statistics_json: str) -> None:
    statistics = json.loads(statistics_json)
    counts: Counter[str] = Counter()
    for broker in statistics.get("brokers", {}).values():
        # Requests to bootstrap brokers and to the broker by its id are distinct entries; the
        # same connection is never counted twice, so they add up.
        for api, requests in (broker.get("req") or {}).items():
            counts[api] += int(requests)
    with _lock:
        _librdkafka[key] = counts


def _patch_confluent_kafka() -> None:
    import confluent_kafka

    def with_statistics(config: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """The client's config with statistics on; the list gets the client's key once built."""
        holder: list[int] = []
        patched = {
            **config,
            "statistics.interval.ms": STATISTICS_INTERVAL_MS,
            "stats_cb": lambda text: librdkafka_counts(holder[0], text) if holder else None,
        }
        return patched, holder

    class CountedProducer(confluent_kafka.Producer):
        def __init__(self, config: dict[str, Any], **kwargs: Any) -> None:
            patched, holder = with_statistics(config)
            super().__init__(patched, **kwargs)
            holder.append(id(self))

    class CountedConsumer(confluent_kafka.Consumer):
        def __init__(self, config: dict[str, Any], **kwargs: Any) -> None:
            patched, holder = with_statistics(config)
            super().__init__(patched, **kwargs)
            holder.append(id(self))

    # Before eventfed's modules import the names, so theirs are these.
    setattr(confluent_kafka, "Producer", CountedProducer)  # noqa: B010
    setattr(confluent_kafka, "Consumer", CountedConsumer)  # noqa: B010


def _patch_aiokafka() -> None:
    from aiokafka.client import AIOKafkaClient

    original = AIOKafkaClient.send

    async def send(self: Any, node_id: Any, request: Any, **kwargs: Any) -> Any:
        # FetchRequest_v4 -> Fetch, OffsetCommitRequest_v2 -> OffsetCommit: librdkafka's names.
        name = type(request).__name__.split("_v", 1)[0].removesuffix("Request")
        with _lock:
            _aiokafka[name] += 1
        return await original(self, node_id, request, **kwargs)

    setattr(AIOKafkaClient, "send", send)  # noqa: B010


def snapshot() -> dict[str, Any]:
    with _lock:
        librdkafka: Counter[str] = Counter()
        for counts in _librdkafka.values():
            librdkafka.update(counts)
        return {"at": time.time(), "librdkafka": dict(librdkafka), "aiokafka": dict(_aiokafka)}


def _writer(output: Path) -> None:
    partial = output.with_suffix(".tmp")
    while True:
        partial.write_text(json.dumps(snapshot()))
        os.replace(partial, output)
        time.sleep(STATISTICS_INTERVAL_MS / 1000)


def read(path: Path) -> dict[str, Any]:
    """The last counts a process wrote; empty when it has written none yet."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def per_second(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Requests per second per API between two readings of one process (both kinds of client)."""
    seconds = float(after.get("at", 0.0)) - float(before.get("at", 0.0))
    if seconds <= 0:
        return {}
    rates: Counter[str] = Counter()
    for kind in ("librdkafka", "aiokafka"):
        for api, total in (after.get(kind) or {}).items():
            rates[api] += (total - (before.get(kind) or {}).get(api, 0)) / seconds
    return {api: rate for api, rate in sorted(rates.items()) if rate > 0}


def main(argv: list[str]) -> int:
    output, args = Path(argv[0]), argv[1:]
    _patch_confluent_kafka()
    _patch_aiokafka()
    threading.Thread(target=_writer, args=(output,), name="request-counts", daemon=True).start()
    from bridge.cli import main as eventfed

    return int(eventfed(args) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
