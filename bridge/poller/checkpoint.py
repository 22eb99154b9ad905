"""Where `eventfed poll` keeps its high-water mark: a compacted Kafka topic, one record per VIM.

key     the VIM id
value   {"vim_id", "high_water": ISO 8601 UTC on Nova's clock, "written_at"}

It is written only after every raw record of the cycle was acknowledged by Kafka, so a restart
(on any node: nothing is kept on local disk) polls again from where the last complete cycle
started, less the overlap window. Compaction keeps the topic at one record per VIM.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bridge.kafka_config import consumer_config
from bridge.kafka_delivery import ProduceRequest, produce_and_confirm
from bridge.poller.snapshot import parse_api_time
from bridge.settings import PollerSettings, VimPollerSettings
from bridge.topic_admin import TopicSpec

LOG = logging.getLogger(__name__)


class CheckpointError(Exception):
    """The checkpoint topic cannot be read or written now."""


def checkpoint_topic(settings: PollerSettings) -> TopicSpec:
    # One partition: a handful of records, read whole at start-up.
    return TopicSpec(
        settings.poll_checkpoint_topic,
        1,
        {"cleanup.policy": "compact", "segment.ms": str(3600 * 1000), "min.compaction.lag.ms": "0"},
    )


def encode(vim_id: str, high_water: datetime, now: datetime) -> bytes:
    return json.dumps(
        {"vim_id": vim_id, "high_water": high_water.isoformat(), "written_at": now.isoformat()}
    ).encode()


def decode(value: bytes | None) -> datetime | None:
    if not value:
        return None
    try:
        document = json.loads(value)
    except ValueError:
        return None
    return parse_api_time(document.get("high_water")) if isinstance(document, dict) else None


class KafkaCheckpoints:
    def __init__(self, settings: VimPollerSettings, producer: Any) -> None:
        self._settings = settings
        self._producer = producer
        self._topic = settings.poll_checkpoint_topic

    def read(self, timeout: float = 10.0) -> datetime | None:
        """The VIM's last high-water mark, or None if it never completed a cycle."""
        consumer = Consumer(consumer_config(self._settings, f"poll-{self._settings.vim_id}-checkpoint", None))
        try:
            partition = TopicPartition(self._topic, 0)
            try:
                low, high = consumer.get_watermark_offsets(partition, timeout=timeout)
            except Exception as exc:
                raise CheckpointError(f"cannot read {self._topic}: {exc}") from None
            if high <= low:
                return None
            consumer.assign([TopicPartition(self._topic, 0, low)])
            found: datetime | None = None
            key = self._settings.vim_id.encode()
            position = low
            while position < high:
                message = consumer.poll(timeout)
                if message is None:
                    raise CheckpointError(f"timed out reading {self._topic} at offset {position} of {high}")
                if message.error():
                    raise CheckpointError(f"cannot read {self._topic}: {message.error()}")
                position = (message.offset() or position) + 1
                if message.key() == key:
                    found = decode(message.value())
            return found
        finally:
            consumer.close()

    def write(self, high_water: datetime) -> None:
        request = ProduceRequest(
            self._topic,
            self._settings.vim_id.encode(),
            encode(self._settings.vim_id, high_water, datetime.now(UTC)),
        )
        delivery = produce_and_confirm(self._producer, [request], self._settings.delivery_timeout)
        if delivery.failed:
            raise CheckpointError(f"Kafka did not take the checkpoint: {delivery.first_error}")
