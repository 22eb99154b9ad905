"""eventfed's Kafka topics, created up front with the configured partitions and configs.

In Kubernetes with Strimzi the chart declares them as KafkaTopic resources instead; creating a
topic that exists is a no-op, and a user without the Create permission gets a warning, not a stop.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.kafka_config import (
    KafkaTlsRefused,
    admin_config,
    explain_tls_failure,
    forget_transport_error,
    last_transport_error,
    record_client_error,
)
from bridge.settings import CommonSettings

LOG = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def core_topics(settings: CommonSettings) -> list[TopicSpec]:
    """The raw log, the canonical events, the compacted state, the dead letters, and the fleet
    parts (as many partitions as the raw topic, since the merge is co-partitioned with it)."""
    partitions = settings.partitions
    return [
        # The raw topic is the replayable audit log of everything the clouds said.
        TopicSpec(settings.raw_topic, partitions, {"retention.ms": str(7 * DAY_MS)}),
        TopicSpec(settings.events_topic, partitions, {"retention.ms": str(7 * DAY_MS)}),
        TopicSpec(
            settings.state_topic,
            partitions,
            {"cleanup.policy": "compact", "delete.retention.ms": str(DAY_MS), "segment.ms": str(3600 * 1000)},
        ),
        TopicSpec(settings.dlq_topic, 1, {"retention.ms": str(14 * DAY_MS)}),
        # Read within an interval or two of being written; a day covers a worker down overnight.
        TopicSpec(settings.fleet_parts_topic, partitions, {"retention.ms": str(DAY_MS)}),
    ]


def ensure_topics(settings: CommonSettings, specs: list[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    # Neither librdkafka's own lines (below CRITICAL) nor its error callbacks are logged: this client
    # is polled (see _wait_polling), and the caller reports a failure once, in its words.
    quiet: dict[str, Any] = {"log_level": 2, "error_cb": record_client_error}
    admin = AdminClient({**admin_config(settings), **quiet})
    new = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=settings.replication_factor,
            config=s.config,
        )
        for s in specs
    ]
    if not new:
        return []
    created: list[str] = []
    futures = admin.create_topics(new, request_timeout=timeout)
    _wait_polling(admin, settings, list(futures.values()), timeout)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if error.code() in (
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.CLUSTER_AUTHORIZATION_FAILED,
            ):
                LOG.warning("not allowed to create topic %s; it must be declared (KafkaTopic)", name)
                continue
            raise
    if created:
        LOG.info("created topics %s", ", ".join(created))
    return created


def partition_counts(settings: CommonSettings, names: list[str], timeout: float = 30.0) -> dict[str, int]:
    """The partitions Kafka has for each of `names` that exists (what the brokers say, not the
    settings: a topic created earlier, by hand or by a KafkaTopic, keeps its own count)."""
    quiet: dict[str, Any] = {"log_level": 2, "error_cb": record_client_error}
    admin = AdminClient({**admin_config(settings), **quiet})
    # A topic created a moment ago may be missing from the first metadata a broker gives.
    deadline = time.monotonic() + min(timeout, 5.0)
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        counts = {
            name: len(topics[name].partitions) for name in names if name in topics and not topics[name].error
        }
        if len(counts) == len(names) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def _wait_polling(
    admin: AdminClient, settings: CommonSettings, futures: list[Future[Any]], timeout: float
) -> None:
    """Wait for the futures while serving the client's callbacks: a TLS refusal is reported only
    through them, and stops the wait at once instead of after the whole timeout."""
    forget_transport_error()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(f.done() for f in futures):
        admin.poll(0.2)
        refused = explain_tls_failure(last_transport_error(), settings)
        if refused is not None:
            raise KafkaTlsRefused(f"Kafka at {settings.kafka_bootstrap_servers}: {refused}")


def delete_topics(settings: CommonSettings, names: list[str], timeout: float = 30.0) -> None:
    """Delete topics that exist, and wait until the broker no longer lists them."""
    admin = AdminClient(admin_config(settings))
    existing = set(admin.list_topics(timeout=timeout).topics)
    doomed = [n for n in names if n in existing]
    if not doomed:
        return
    for future in admin.delete_topics(doomed, request_timeout=timeout).values():
        future.result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and set(doomed) & set(admin.list_topics(timeout=timeout).topics):
        time.sleep(0.2)
