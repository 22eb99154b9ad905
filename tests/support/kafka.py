"""Test helpers for reading what landed on a real Kafka topic."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition


def read_topic(
    bootstrap: str,
    topic: str,
    expected: int | None = None,
    timeout: float = 60.0,
    idle: float = 3.0,
    until: Callable[[list[Message]], bool] | None = None,
) -> list[Message]:
    """Every record of a topic from the beginning, until `expected` are read (or `until` says so),
    or no record came for `idle` seconds after the expected count, or `timeout`."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = list(metadata.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records: list[Message] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, 0.5)
            for msg in batch:
                if msg.error() is None:
                    records.append(msg)
            if batch:
                last = time.monotonic()
            if until is not None and until(records):
                break
            if expected is not None and len(records) >= expected and time.monotonic() - last > idle:
                break
            if expected is None and until is None and time.monotonic() - last > idle:
                break
    finally:
        consumer.close()
    return records


def headers_of(msg: Message) -> dict[str, bytes]:
    return {k: v for k, v in (msg.headers() or [])}


def delete_topics_containing(bootstrap: str, marker: str) -> None:
    """Remove a test's topics (its own and the ones Faust made for it), so runs leave no litter."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if marker in t]
    if names:
        for future in admin.delete_topics(names, request_timeout=30).values():
            # Already gone, or the broker is down: nothing left to clean.
            with contextlib.suppress(Exception):
                future.result(timeout=30)
