"""Reads given offsets of one raw partition straight from Kafka.

The worker's Faust consumer can fetch records and never hand them to the agent (around a
rebalance, or records of a partition it has just paused). The runner notices such a hole by the
offsets (streams.offsets) and reads the missing records here, by offset, with a consumer of its
own that joins no group and commits nothing: what it reads is handled and committed by the worker
like any other record. Holes are rare, so one consumer, created on first use, serves them all.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from bridge import kafka_error_internals

# How long one read waits for its records before returning what it has; the runner reads on.
READ_SECONDS = 10.0


@dataclass(frozen=True)
class RangeRecord:
    """A raw record read by offset, in the shape the runner takes from Faust."""

    tp: Any
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any
    generation_id: int | None = None

    @property
    def topic(self) -> str:
        topic: str = self.tp.topic
        return topic

    @property
    def partition(self) -> int:
        partition: int = self.tp.partition
        return partition


@dataclass(frozen=True)
class RangeRead:
    """Records of one partition from the first offset still held, in order, and the log's start
    (records below it were deleted by retention)."""

    records: list[RangeRecord]
    log_start: int


class KafkaRangeReader:
    def __init__(self, config: dict[str, Any], read_seconds: float = READ_SECONDS) -> None:
        self._config = config
        self._read_seconds = read_seconds
        self._consumer: Consumer | None = None
        # confluent-kafka's consumer blocks, and is used from one thread at a time.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="eventfed-range-reader")

    async def read(self, tp: Any, start: int, end: int, limit: int) -> RangeRead:
        """Up to `limit` records of `tp` from `start` (or the log start, if retention passed it)
        up to `end`, exclusive."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._read, tp, start, end, limit)

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self._config)
        return self._consumer

    def _watermarks(self, tp: Any) -> tuple[int, int]:
        """The partition's log start and end, asked of its leader."""
        start, end = self._client().get_watermark_offsets(
            TopicPartition(tp.topic, tp.partition), timeout=self._read_seconds, cached=False
        )
        return start, end

    def _read(self, tp: Any, start: int, end: int, limit: int) -> RangeRead:
        consumer = self._client()
        log_start, _end = self._watermarks(tp)
        begin = max(start, log_start)
        stop = min(end, begin + limit)
        records: list[RangeRecord] = []
        if begin >= stop:
            return RangeRead(records, log_start)
        consumer.assign([TopicPartition(tp.topic, tp.partition, begin)])
        try:
            deadline = time.monotonic() + self._read_seconds
            position = begin
            while position < stop and time.monotonic() < deadline:
                for message in consumer.consume(num_messages=stop - position, timeout=0.5):
                    error = message.error()
                    if error is not None:
                        if error.code() == kafka_error_internals.PARTITION_EOF:
                            continue
                        raise KafkaException(error)
                    offset = message.offset()
                    if offset is None or offset < position or offset >= stop:
                        continue
                    records.append(
                        RangeRecord(tp, offset, message.key(), message.value(), message.headers() or [])
                    )
                    position = offset + 1
        finally:
            consumer.unassign()
        return RangeRead(records, log_start)

    async def log_ends(self, partitions: set[Any]) -> dict[Any, int]:
        """The offset the next record of each partition will get."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._log_ends, partitions)

    def _log_ends(self, partitions: set[Any]) -> dict[Any, int]:
        return {tp: self._watermarks(tp)[1] for tp in partitions}

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self._executor.shutdown(wait=False)
