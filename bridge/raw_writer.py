"""Writing raw records to Kafka, confirmed: shared by the listener and the poller.

A batch is produced and waited for until Kafka has acknowledged (or refused) every record; the
caller decides what a refusal means (hold the batch unacked, retry the cycle). Raw records of one
partition ride in one Kafka record (schemas.raw.pack) once the raw topic's partition count is known.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.kafka_config import KeyPartitioner
from bridge.kafka_delivery import ProduceRequest, produce_and_confirm
from schemas.raw import DeadLetter, RawRecord, pack

LOG = logging.getLogger(__name__)


@dataclass
class BatchResult:
    written: int = 0
    dead_lettered: int = 0
    failed: list[RawRecord | DeadLetter] = field(default_factory=list)
    first_error: str = ""


class RawWriterSettings(Protocol):
    """What a raw-record writer is built from (the listener's and the poller's settings)."""

    @property
    def raw_topic(self) -> str: ...
    @property
    def dlq_topic(self) -> str: ...
    @property
    def delivery_timeout(self) -> float: ...
    @property
    def pack_max(self) -> int: ...
    @property
    def max_message_bytes(self) -> int: ...


class KafkaBatchWriter:
    """Produces a batch and waits until Kafka has acknowledged (or refused) every record.

    Raw records of one partition are packed into one Kafka record (schemas.raw.pack) once the raw
    topic's partition count is known; it is read again every `partitions_refresh` seconds, and
    until it is known each notification is a record of its own, which lands on the same partition.
    """

    def __init__(
        self,
        producer: Any,
        raw_topic: str,
        dlq_topic: str,
        delivery_timeout: float,
        pack_max: int = 1,
        max_bytes: int = 1_000_000,
        partitions_refresh: float = 30.0,
    ) -> None:
        self._producer = producer
        self._raw_topic = raw_topic
        self._dlq_topic = dlq_topic
        self._delivery_timeout = delivery_timeout
        self._pack_max = pack_max
        self._max_bytes = max_bytes
        self._partitions_refresh = partitions_refresh
        self._partitioner: KeyPartitioner | None = None
        self._partitions_read_at = float("-inf")

    @classmethod
    def from_settings(cls, producer: Any, settings: RawWriterSettings) -> KafkaBatchWriter:
        return cls(
            producer,
            settings.raw_topic,
            settings.dlq_topic,
            settings.delivery_timeout,
            pack_max=settings.pack_max,
            max_bytes=settings.max_message_bytes,
        )

    def partitioner(self) -> KeyPartitioner | None:
        if self._pack_max <= 1:
            return None
        now = time.monotonic()
        if now - self._partitions_read_at < self._partitions_refresh:
            return self._partitioner
        self._partitions_read_at = now
        try:
            topic = self._producer.list_topics(self._raw_topic, timeout=2).topics.get(self._raw_topic)
            count = len(topic.partitions) if topic is not None and topic.error is None else 0
        except Exception as exc:  # Kafka unreachable: keep what was known
            LOG.warning("cannot read the partitions of %s: %s", self._raw_topic, exc)
            return self._partitioner
        if count and self._partitioner is not None and self._partitioner.partitions != count:
            # Kafka moves most keys when partitions are added; a VM's older events may still
            # wait on its old partition, so order across the change is not kept.
            LOG.warning(
                "%s went from %d to %d partitions: per-VM order across the change is not kept",
                self._raw_topic,
                self._partitioner.partitions,
                count,
            )
        if count and (self._partitioner is None or self._partitioner.partitions != count):
            LOG.info(
                "%s has %d partitions; packing up to %d notifications a record",
                self._raw_topic,
                count,
                self._pack_max,
            )
            self._partitioner = KeyPartitioner(count)
        return self._partitioner

    def write(self, records: Sequence[RawRecord | DeadLetter]) -> BatchResult:
        """Returns the records Kafka refused, in their original order."""
        raw_positions: list[int] = []
        raw: list[RawRecord] = []
        for index, record in enumerate(records):
            if isinstance(record, RawRecord):
                raw_positions.append(index)
                raw.append(record)
        requests: list[ProduceRequest] = []
        members: list[list[int]] = []
        for packed in pack(raw, self.partitioner(), self._pack_max, self._max_bytes):
            requests.append(
                ProduceRequest(self._raw_topic, packed.key, packed.value, packed.headers, packed.partition)
            )
            members.append([raw_positions[m] for m in packed.members])
        for index, record in enumerate(records):
            if isinstance(record, DeadLetter):
                requests.append(ProduceRequest(self._dlq_topic, record.key, record.value, record.headers))
                members.append([index])
        delivery = produce_and_confirm(self._producer, requests, self._delivery_timeout)
        failed = sorted(i for request_index in delivery.failed for i in members[request_index])
        result = BatchResult(failed=[records[i] for i in failed], first_error=delivery.first_error)
        failed_requests = set(delivery.failed)
        for request_index, request in enumerate(requests):
            if request_index in failed_requests:
                continue
            if request.topic == self._dlq_topic:
                result.dead_lettered += 1
            else:
                result.written += len(members[request_index])
        return result
