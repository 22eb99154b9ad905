"""Test helpers for reading what landed on a real Kafka topic."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition


def read_topic(
    bootstrap: str,
    topic: str,
    expected: int | None = None,
    timeout: float = 60.0,
    idle: float = 3.0,
    until: Callable[[list[Message]], bool] | None = None,
    count: Callable[[list[Message]], int] = len,
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
            if expected is not None and count(records) >= expected and time.monotonic() - last > idle:
                break
            if expected is None and until is None and time.monotonic() - last > idle:
                break
    finally:
        consumer.close()
    return records


class Notification:
    """One notification of the raw topic, unpacked from its Kafka record: the Message methods the
    tests use, with the key and headers of its single form, and its line in the record."""

    def __init__(self, record: Any, partition: int, offset: int, index: int) -> None:
        self._record = record
        self._partition = partition
        self._offset = offset
        self.index = index

    def key(self) -> bytes:
        return bytes(self._record.key)

    def value(self) -> bytes:
        return bytes(self._record.value)

    def headers(self) -> list[tuple[str, Any]]:
        return list(self._record.headers)

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


def unpacked(records: list[Message]) -> list[Notification]:
    from schemas.raw import unpack

    return [
        Notification(single, msg.partition() or 0, msg.offset() or 0, index)
        for msg in records
        for index, single in enumerate(unpack(msg.key(), msg.value() or b"", msg.headers()))
    ]


def read_notifications(
    bootstrap: str, topic: str, expected: int, timeout: float = 60.0
) -> list[Notification]:
    """Every notification on a raw topic, packed or not, until `expected` are there and no more
    came for a few seconds, or `timeout`."""
    return unpacked(
        read_topic(bootstrap, topic, expected, timeout=timeout, count=lambda records: len(unpacked(records)))
    )


def headers_of(msg: Message | Notification) -> dict[str, bytes]:
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
