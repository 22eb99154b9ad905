"""Kafka helpers for the bench: record counts from end offsets, reading ids back, cleaning up."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.kafka_config import KeyPartitioner, producer_config
from bridge.settings import CommonSettings
from schemas.raw import HEADER_EVENT_TYPE, HEADER_MESSAGE_ID, HEADER_VIM_ID, RawRecord, pack, unpack


class Offsets:
    """Counts records on topics from their partitions' watermarks (no data is read)."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-offsets-{uuid.uuid4().hex[:8]}"}
        )
        self._partitions: dict[str, list[int]] = {}

    def partitions(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            metadata = self._consumer.list_topics(topic, timeout=10)
            found = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
            if not found:
                return []
            self._partitions[topic] = found
        return self._partitions[topic]

    def count(self, topic: str) -> int:
        total = 0
        for partition in self.partitions(topic):
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10, cached=False
            )
            total += high - low
        return total

    def close(self) -> None:
        self._consumer.close()


def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
    )
    for future in futures.values():
        future.result(30)


def delete_topics_with_prefixes(bootstrap: str, prefixes: Iterable[str]) -> list[str]:
    """Delete this run's topics (and only those: every name starts with a run-unique prefix)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = tuple(prefixes)
    doomed = sorted(t for t in admin.list_topics(timeout=15).topics if t.startswith(wanted))
    if doomed:
        for future in admin.delete_topics(doomed, request_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(30)
    return doomed


def read_ids(
    bootstrap: str, topic: str, headers: tuple[str, ...], expected: int, timeout: float
) -> list[tuple[str, ...]]:
    """(key, *header values) of every record of a topic, read from the beginning until `expected`
    were read and half a second passed without more, or `timeout`. A raw record packing several
    notifications gives one row per notification, as if each had its own record."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
        }
    )
    rows: list[tuple[str, ...]] = []
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.consume(2000, 0.3)
            if batch:
                quiet_since = time.monotonic()
            for msg in batch:
                if msg.error() is not None:
                    continue
                for single in unpack(msg.key(), msg.value() or b"", msg.headers() or []):
                    found = {str(pair[0]): _text(pair[1]) for pair in single.headers}
                    rows.append((_text(single.key), *(found.get(h, "") for h in headers)))
            if len(rows) >= expected and time.monotonic() - quiet_since > 0.5:
                break
    finally:
        consumer.close()
    return rows


def _text(value: str | bytes | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def produce_raw_records(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes, bytes, str, str]],
    vim_id: str,
    batch: int = 500,
    partitions: int = 8,
) -> float:
    """Write raw records (key, value, event_type, message_id) as the listener would, packed per
    partition in batches of `batch` notifications (its default batch size); seconds taken."""
    settings = CommonSettings(kafka_bootstrap_servers=bootstrap)
    producer = Producer(producer_config(settings, "bench-prefill"))
    partitioner = KeyPartitioner(partitions)
    started = time.perf_counter()
    for first in range(0, len(records), batch):
        raw = [
            RawRecord(
                key,
                value,
                [
                    (HEADER_VIM_ID, vim_id.encode()),
                    (HEADER_EVENT_TYPE, event_type.encode()),
                    (HEADER_MESSAGE_ID, message_id.encode()),
                ],
            )
            for key, value, event_type, message_id in records[first : first + batch]
        ]
        for packed in pack(raw, partitioner, batch, 1_000_000):
            extra = {} if packed.partition is None else {"partition": packed.partition}
            while True:
                try:
                    producer.produce(
                        topic, key=packed.key, value=packed.value, headers=packed.headers, **extra
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} raw records were not delivered to {topic}")
    return time.perf_counter() - started


def event_times(value: bytes, fmt: str) -> tuple[float, float, str]:
    """(occurred_at, received_at, message_id) of an event on a subscription topic, epoch seconds."""
    if fmt == "json":
        body: dict[str, Any] = json.loads(value)
        occurred = datetime.fromisoformat(body["occurred_at"]).timestamp()
        received = datetime.fromisoformat(body["received_at"]).timestamp()
        return occurred, received, str(body.get("message_id") or "")
    from streams import codecs

    event = codecs.decode(value, "avro")
    occurred_at = event["occurred_at"]
    received_at = event["received_at"]
    return (
        _epoch(occurred_at),
        _epoch(received_at),
        str(event.get("message_id") or ""),
    )


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    return datetime.fromisoformat(str(value)).timestamp()
