"""`eventfed consume TOPIC`: a topic's records, decoded, for a person (or a file).

Reads every partition from the start (or the last N records of each with --last), without a
consumer group and without committing anything, and prints one JSON object per record (JSON
Lines): where it is (topic, partition, offset), its key and headers, and its value decoded as
`eventfed decode` would (`--format auto` tells a raw-topic record, a VES event and an encoded event
apart by their content). It stops once the topic has been idle for --wait seconds, or after --max
records. A record that does not decode is printed with the reason and its bytes in hex, and the
others still are: one bad record must not hide a topic.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from bridge.kafka_config import KafkaTlsRefused, consumer_config, record_client_error
from bridge.logs import setup_logging
from bridge.settings import CommonSettings, load
from streams import codecs
from streams.schema_and_decode import NotDecoded, decode_any

LOG = logging.getLogger(__name__)

# Bytes of an undecodable value shown in hex: enough to recognise a framing, short enough to read.
HEX_SHOWN = 64


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    return data.decode("utf-8", errors="backslashreplace")


def record_view(message: Any, fmt: str, confluent: codecs.ConfluentCodec | None = None) -> dict[str, Any]:
    """One Kafka record as the JSON object `consume` prints."""
    view: dict[str, Any] = {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "key": _text(message.key()),
        "headers": {name: _text(value) for name, value in (message.headers() or [])},
    }
    value = message.value()
    if value is None:
        view["value"] = None  # a tombstone of a compacted topic
        return view
    try:
        view["value"] = decode_any(value, fmt, confluent)
    except NotDecoded as exc:
        view["error"] = str(exc)
        view["value_hex"] = value[:HEX_SHOWN].hex(" ") + (" ..." if len(value) > HEX_SHOWN else "")
    return view


def _start_offsets(consumer: Consumer, topic: str, partitions: list[int], last: int | None) -> list[Any]:
    if last is None:
        return [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
    starts = []
    for partition in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        starts.append(TopicPartition(topic, partition, max(low, high - last)))
    return starts


def run(args: argparse.Namespace) -> int:
    settings = load(CommonSettings)
    setup_logging(settings, "consume")
    confluent = codecs.ConfluentCodec(args.schema_registry_url) if args.schema_registry_url else None
    # librdkafka's own lines and error callbacks are left out: a failure is reported once, below.
    consumer = Consumer(consumer_config(settings, "consume", None, log_level=2, error_cb=record_client_error))
    try:
        try:
            metadata = consumer.list_topics(args.topic, timeout=10)
        except KafkaException as exc:
            error = exc.args[0]
            detail = error.str() if hasattr(error, "str") else str(error)
            LOG.error("eventfed consume: Kafka at %s: %s", settings.kafka_bootstrap_servers, detail)
            return 1
        found = metadata.topics.get(args.topic)
        if found is None or found.error is not None or not found.partitions:
            LOG.error(
                "eventfed consume: topic %s does not exist in Kafka at %s (eventfed topics lists eventfed's)",
                args.topic,
                settings.kafka_bootstrap_servers,
            )
            return 1
        consumer.assign(_start_offsets(consumer, args.topic, sorted(found.partitions), args.last))
        return _print_until_idle(consumer, args, confluent)
    except KafkaTlsRefused as exc:
        LOG.error("eventfed consume: %s", exc)
        return 1
    finally:
        consumer.close()


def _print_until_idle(consumer: Consumer, args: argparse.Namespace, confluent: Any) -> int:
    printed = 0
    last_seen = time.monotonic()
    while time.monotonic() - last_seen < args.wait and (args.max is None or printed < args.max):
        for message in consumer.consume(500, 0.5):
            if message.error() is not None:
                LOG.warning("eventfed consume: %s", message.error())
                continue
            sys.stdout.write(
                json.dumps(record_view(message, args.format, confluent), ensure_ascii=False) + "\n"
            )
            printed += 1
            last_seen = time.monotonic()
            if args.max is not None and printed >= args.max:
                break
    sys.stdout.flush()
    return 0
