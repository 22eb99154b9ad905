"""The API's read model: the state table, kept current from the compacted state topic.

`KafkaReadModel` replays the whole topic into a `StateTable` at start-up and then keeps
following it, in one background thread. It reads by `assign()` from the beginning of every
partition and never commits: the compacted topic is the snapshot, so a restart simply rebuilds
the table, and several API replicas each hold a full copy without any group coordination.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from bridge import kafka_error_internals
from bridge.api.state_table import ApplyOutcome, StateTable
from bridge.kafka_config import consumer_config
from bridge.settings import ApiSettings

LOG = logging.getLogger(__name__)

# How often the consumer thread asks the broker for the topic's metadata: it proves Kafka is
# reachable for /readyz and discovers partitions added after start-up.
METADATA_INTERVAL_SECONDS = 5.0
METADATA_TIMEOUT_SECONDS = 5.0
# Reachability is stale (and /readyz fails) when no metadata request succeeded for this long.
REACHABLE_GRACE_SECONDS = 3 * METADATA_INTERVAL_SECONDS + METADATA_TIMEOUT_SECONDS
CONSUME_BATCH = 1000
CONSUME_TIMEOUT_SECONDS = 0.2
# Malformed records are logged individually only up to here, then one line per this many.
_MALFORMED_LOG_FIRST = 10
_MALFORMED_LOG_EVERY = 1000


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    caught_up: bool
    kafka_reachable: bool
    # Why the model is not ready; empty when it is.
    reasons: list[str] = field(default_factory=list)


class ReadModel(Protocol):
    """What the web app needs from a read model."""

    @property
    def table(self) -> StateTable: ...

    @property
    def caught_up(self) -> bool:
        """True once the table holds everything the topic held at start-up (and stays true)."""
        ...

    @property
    def catch_up_seconds(self) -> float | None: ...

    def readiness(self) -> Readiness: ...


class InMemoryReadModel:
    """A read model over a table filled by the caller: for tests and tools, no Kafka."""

    def __init__(self, table: StateTable | None = None, *, caught_up: bool = True, reachable: bool = True):
        self._table = table if table is not None else StateTable()
        self.is_caught_up = caught_up
        self.reachable = reachable

    @property
    def table(self) -> StateTable:
        return self._table

    @property
    def caught_up(self) -> bool:
        return self.is_caught_up

    @property
    def catch_up_seconds(self) -> float | None:
        return 0.0 if self.is_caught_up else None

    def readiness(self) -> Readiness:
        reasons = []
        if not self.is_caught_up:
            reasons.append("the state table is still loading")
        if not self.reachable:
            reasons.append("Kafka is not reachable")
        return Readiness(not reasons, self.is_caught_up, self.reachable, reasons)


class KafkaReadModel:
    """Follows the state topic into a StateTable in a daemon thread; start(), then stop()."""

    def __init__(
        self,
        settings: ApiSettings,
        table: StateTable | None = None,
        *,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
        on_caught_up: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._topic = settings.state_topic
        self._table = table if table is not None else StateTable()
        self._consumer_factory = consumer_factory
        self._on_caught_up = on_caught_up
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._started_at = 0.0
        self._caught_up_at: float | None = None
        # partition -> offset the table must reach: the high watermarks seen at start-up.
        self._pending: dict[int, int] | None = None
        self._assigned: set[int] = set()
        self._topic_missing = False
        self._last_metadata_ok: float | None = None
        self._last_kafka_error = "no answer from Kafka yet"
        self._next_metadata_at = 0.0

    @property
    def table(self) -> StateTable:
        return self._table

    @property
    def caught_up(self) -> bool:
        return self._caught_up_at is not None

    @property
    def catch_up_seconds(self) -> float | None:
        caught_up_at = self._caught_up_at
        return None if caught_up_at is None else caught_up_at - self._started_at

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the read model is already started")
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="state-topic-reader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                LOG.warning("state topic reader did not stop within %.0f s", timeout)

    def wait_caught_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.caught_up and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.caught_up

    def readiness(self) -> Readiness:
        now = time.monotonic()
        with self._lock:
            last_ok = self._last_metadata_ok
            reachable = last_ok is not None and now - last_ok <= REACHABLE_GRACE_SECONDS
            last_error = self._last_kafka_error
            topic_missing = self._topic_missing
            pending = None if self._pending is None else len(self._pending)
        reasons = []
        thread = self._thread
        if thread is None or not thread.is_alive():
            reasons.append("the state topic reader is not running")
        if not self.caught_up:
            if topic_missing:
                reasons.append(f"the state topic {self._topic} does not exist yet")
            elif pending is None:
                reasons.append(f"waiting for the metadata of the state topic {self._topic}")
            else:
                reasons.append(
                    f"catching up with the state topic {self._topic}: {pending} partition(s) behind"
                )
        if not reachable:
            reasons.append(f"Kafka is not reachable: {last_error}")
        return Readiness(not reasons, self.caught_up, reachable, reasons)

    # --- the consumer thread -------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return consumer_config(
            self._settings,
            "api",
            None,
            error_cb=self.on_client_error,
            # End-of-partition events tell when the replay reached the start-up high watermark
            # even if the last offsets are transaction markers that are never delivered.
            **{"enable.partition.eof": True, "queued.max.messages.kbytes": 16_384},
        )

    def on_client_error(self, error: KafkaError) -> None:
        LOG.warning("kafka client error: %s", error)
        if error.code() == kafka_error_internals.ALL_BROKERS_DOWN:
            with self._lock:
                self._last_metadata_ok = None
                self._last_kafka_error = str(error)

    def _run(self) -> None:
        LOG.info("reading state topic %s from %s", self._topic, self._settings.kafka_bootstrap_servers)
        consumer = self._consumer_factory(self._config())
        try:
            while not self._stop.is_set():
                try:
                    self._step(consumer)
                except Exception:
                    # The thread must survive anything a broker or a record can do to it.
                    LOG.exception("state topic reader failed; retrying in 1 s")
                    self._stop.wait(1.0)
        finally:
            try:
                consumer.close()
            except Exception:
                LOG.exception("closing the state topic consumer failed")
        LOG.info("state topic reader stopped")

    def _step(self, consumer: Consumer) -> None:
        if time.monotonic() >= self._next_metadata_at:
            self._refresh_metadata(consumer)
        if not self._assigned:
            self._stop.wait(CONSUME_TIMEOUT_SECONDS)
            return
        for message in consumer.consume(CONSUME_BATCH, CONSUME_TIMEOUT_SECONDS):
            self._handle(message)

    def _refresh_metadata(self, consumer: Consumer) -> None:
        self._next_metadata_at = time.monotonic() + METADATA_INTERVAL_SECONDS
        try:
            metadata = consumer.list_topics(self._topic, timeout=METADATA_TIMEOUT_SECONDS)
        except KafkaException as exc:
            with self._lock:
                self._last_kafka_error = str(exc.args[0] if exc.args else exc)
            LOG.warning("state topic metadata request failed: %s", exc)
            return
        topic = metadata.topics.get(self._topic)
        with self._lock:
            self._last_metadata_ok = time.monotonic()
            self._topic_missing = topic is None or topic.error is not None
        if topic is None or topic.error is not None:
            LOG.warning(
                "state topic %s is not available: %s", self._topic, topic.error if topic else "absent"
            )
            return
        new_partitions = sorted(set(topic.partitions) - self._assigned)
        if new_partitions:
            self._assign(consumer, new_partitions)

    def _assign(self, consumer: Consumer, partitions: list[int]) -> None:
        targets: dict[int, int] = {}
        if self._pending is None:
            # Only the partitions seen at start-up gate readiness; later ones are simply followed.
            for partition in partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(self._topic, partition), timeout=METADATA_TIMEOUT_SECONDS, cached=False
                )
                if high > low:
                    targets[partition] = high
        consumer.incremental_assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in partitions])
        self._assigned.update(partitions)
        LOG.info("following partitions %s of %s", partitions, self._topic)
        if self._pending is None:
            with self._lock:
                self._pending = targets
            LOG.info("replaying state topic %s: %d record offsets", self._topic, sum(targets.values()))
            self._check_caught_up()

    def _handle(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() == kafka_error_internals.PARTITION_EOF:
                self._reached(message.partition(), message.offset())
            else:
                LOG.warning("state topic %s: %s", self._topic, error)
            return
        result = self._table.apply(message.key(), message.value())
        if result.outcome is ApplyOutcome.MALFORMED:
            count = self._table.outcomes[ApplyOutcome.MALFORMED.value]
            if count <= _MALFORMED_LOG_FIRST or count % _MALFORMED_LOG_EVERY == 0:
                LOG.warning(
                    "skipped malformed state record (%s) at %s[%s]@%s; %d so far",
                    result.reason,
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    count,
                )
        offset = message.offset()
        if offset is not None:
            self._reached(message.partition(), offset + 1)

    def _reached(self, partition: int | None, next_offset: int | None) -> None:
        pending = self._pending
        if not pending or partition is None or next_offset is None:
            return
        target = pending.get(partition)
        if target is not None and next_offset >= target:
            with self._lock:
                pending.pop(partition, None)
            self._check_caught_up()

    def _check_caught_up(self) -> None:
        if self._caught_up_at is None and self._pending is not None and not self._pending:
            self._caught_up_at = time.monotonic()
            LOG.info(
                "state table caught up: %d VMs from %s in %.2f s",
                self._table.vm_count,
                self._topic,
                self._caught_up_at - self._started_at,
            )
            if self._on_caught_up is not None:
                self._on_caught_up()
