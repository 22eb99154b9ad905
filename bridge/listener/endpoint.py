"""The listener's batch handling: write a batch of notifications to Kafka, then say what to do
with it (HANDLED or REQUEUE). Nothing here opens a connection: the producer is passed in.

Every batch is produced to Kafka and acked on RabbitMQ only once Kafka has acknowledged every
record of it. A batch with any failed delivery is requeued after an exponential, capped backoff
(oslo requeues instantly and would loop hot), so while Kafka is unreachable the notifications
wait in RabbitMQ, unacked. A message that can never be written (not serialisable, oversize) goes
to the dead-letter topic and is acked, so a poison message neither blocks nor loops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from bridge.listener import oslo_internals
from bridge.listener.window import BatchWindow
from bridge.raw_writer import KafkaBatchWriter
from bridge.retry import Backoff
from bridge.settings import ListenerSettings
from schemas.raw import DeadLetter, RawRecord, build_raw_record

LOG = logging.getLogger(__name__)

RECEIVED = Counter("eventfed_listener_notifications_received_total", "Notifications received from RabbitMQ")
WRITTEN = Counter(
    "eventfed_listener_records_written_total", "Notifications Kafka acknowledged on the raw topic"
)
REQUEUED = Counter(
    "eventfed_listener_requeued_total", "Notifications requeued to RabbitMQ (shutdown, long outage)"
)
RETRIES = Counter("eventfed_listener_write_retries_total", "Batch writes retried after Kafka refused records")
DEAD_LETTERED = Counter(
    "eventfed_listener_dead_lettered_total", "Notifications written to the dead-letter topic", ["reason"]
)
DELIVERY_FAILURES = Counter(
    "eventfed_listener_delivery_failures_total", "Kafka delivery reports with an error"
)
BATCH_SIZE = Histogram(
    "eventfed_listener_batch_size", "Notifications per batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 5000)
)
BATCH_SECONDS = Histogram("eventfed_listener_batch_duration_seconds", "Time to write and confirm one batch")
BATCH_WINDOW = Gauge(
    "eventfed_listener_batch_window_seconds", "How long the listener now waits to fill a batch"
)

PRIORITIES = ("audit", "debug", "info", "warn", "error", "critical", "sample")


class NotificationEndpoint:
    """Writes one batch, in arrival order, and says what to do with it: HANDLED or REQUEUE."""

    def __init__(
        self,
        settings: ListenerSettings,
        writer: KafkaBatchWriter,
        stop: threading.Event,
        set_window: Callable[[float], object] | None = None,
    ) -> None:
        """set_window: applies the batch window the load calls for (None: the window is fixed)."""
        import oslo_messaging

        self._handled = oslo_messaging.NotificationResult.HANDLED
        self._requeue = oslo_messaging.NotificationResult.REQUEUE
        self._settings = settings
        self._writer = writer
        self._backoff = Backoff(settings.retry_backoff_initial, settings.retry_backoff_max)
        self._stop = stop
        self.window = BatchWindow(
            settings.batch_timeout,
            settings.batch_timeout_max,
            settings.batch_busy_rate,
            company_wait=settings.batch_company_wait,
        )
        self._set_window = set_window if self.window.adaptive else None
        self._applied_window = settings.batch_timeout
        BATCH_WINDOW.set(settings.batch_timeout)

    def _write_holding_the_batch(self, records: list[RawRecord | DeadLetter]) -> Any:
        """Write until Kafka has every record, holding the batch unacked in between.

        Retrying in place keeps each VM's order: a requeued batch would be overtaken by the
        messages RabbitMQ already delivered behind it. The batch is requeued only to shut down
        or after hold_max_seconds (RabbitMQ closes a channel whose deliveries stay unacked for
        its consumer_timeout, 30 minutes by default).
        """
        held_since = time.monotonic()
        pending = records
        while True:
            result = self._writer.write(pending)
            WRITTEN.inc(result.written)
            if not result.failed:
                self._backoff.reset()
                return self._handled
            DELIVERY_FAILURES.inc(len(result.failed))
            pending = result.failed
            if self._stop.is_set() or time.monotonic() - held_since > self._settings.hold_max_seconds:
                LOG.warning("requeueing %d notifications to RabbitMQ: %s", len(records), result.first_error)
                return self._requeue
            delay = self._backoff.next_delay()
            self._stop.wait(delay)
            RETRIES.inc()
            LOG.warning(
                "kafka refused %d of %d records (%s); holding the batch, retry after %.1fs",
                len(result.failed),
                len(records),
                result.first_error,
                delay,
            )

    def handle(self, messages: Sequence[tuple[str, dict[str, Any]]]) -> Any:
        """messages: (priority, oslo message dict) pairs in the order RabbitMQ delivered them."""
        started = time.monotonic()
        RECEIVED.inc(len(messages))
        BATCH_SIZE.observe(len(messages))
        if self._set_window is not None:
            window = self.window.observe(len(messages), self._applied_window, started)
            # Applied from oslo's next poll on; a change under a millisecond is not worth a write.
            if abs(window - self._applied_window) >= 0.001:
                self._set_window(window)
                self._applied_window = window
                BATCH_WINDOW.set(window)
        received_at = datetime.now(UTC)
        records = [
            build_raw_record(
                m, priority, self._settings.vim_id, received_at, self._settings.max_message_bytes
            )
            for priority, m in messages
        ]
        outcome = self._write_holding_the_batch(records)
        BATCH_SECONDS.observe(time.monotonic() - started)
        if outcome is self._requeue:
            REQUEUED.inc(len(messages))
            return outcome
        for record in records:
            if isinstance(record, DeadLetter):
                DEAD_LETTERED.labels(record.reason).inc()
                LOG.warning("dead-lettered a notification: %s", record.reason)
        return self._handled


def ordered_batch_listener(
    transport: Any,
    targets: list[Any],
    endpoint: NotificationEndpoint,
    pool: str,
    batch_size: int,
    batch_timeout: float,
) -> Any:
    """A batch notification server that hands each batch to `endpoint` in arrival order, and
    requeues the whole batch when the endpoint says REQUEUE (or raises); see
    oslo_internals.ordered_batch_dispatcher for why oslo's own dispatcher cannot."""
    from oslo_messaging.notify import listener as notify_listener

    dispatcher = oslo_internals.ordered_batch_dispatcher(
        lambda messages: endpoint.handle(messages), PRIORITIES
    )
    return notify_listener.BatchNotificationServer(
        transport, targets, dispatcher, "threading", True, pool, batch_size, batch_timeout
    )
