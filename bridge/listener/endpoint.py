"""The listener's batch handling: write a batch of notifications to Kafka, then say what to do
with it (HANDLED or REQUEUE). Nothing here opens a connection: the producer is passed in.

Every batch is produced to Kafka and acked on RabbitMQ only once Kafka has acknowledged every
record of it. A batch with any failed delivery is requeued after an exponential, capped backoff
(oslo requeues instantly and would loop hot), so while Kafka is unreachable the notifications
wait in RabbitMQ, unacked. A message that can never be written (not serialisable, oversize) goes
to the dead-letter topic and is acked, so a poison message neither blocks nor loops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from bridge.listener import oslo_internals
from bridge.listener.window import BatchWindow
from bridge.log_context import vim_bound
from bridge.raw_writer import KafkaBatchWriter
from bridge.retry import Backoff
from bridge.settings import VimListenerSettings
from schemas.raw import DeadLetter, RawRecord, build_raw_record, split_samples

LOG = logging.getLogger(__name__)

RECEIVED = Counter(
    "eventfed_listener_notifications_received_total", "Notifications received from RabbitMQ", ["vim"]
)
WRITTEN = Counter(
    "eventfed_listener_records_written_total", "Notifications Kafka acknowledged on the raw topic", ["vim"]
)
REQUEUED = Counter(
    "eventfed_listener_requeued_total", "Notifications requeued to RabbitMQ (shutdown, long outage)", ["vim"]
)
RETRIES = Counter(
    "eventfed_listener_write_retries_total", "Batch writes retried after Kafka refused records", ["vim"]
)
DEAD_LETTERED = Counter(
    "eventfed_listener_dead_lettered_total",
    "Notifications written to the dead-letter topic",
    ["vim", "reason"],
)
DELIVERY_FAILURES = Counter(
    "eventfed_listener_delivery_failures_total", "Kafka delivery reports with an error", ["vim"]
)
BATCH_SIZE = Histogram(
    "eventfed_listener_batch_size",
    "Notifications per batch",
    ["vim"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 5000),
)
BATCH_SECONDS = Histogram(
    "eventfed_listener_batch_duration_seconds", "Time to write and confirm one batch", ["vim"]
)
BATCH_WINDOW = Gauge(
    "eventfed_listener_batch_window_seconds", "How long the listener now waits to fill a batch", ["vim"]
)
# The metrics labelled by VIM alone; forget_vim drops a VIM's series when it is no longer served.
_BY_VIM = (RECEIVED, WRITTEN, REQUEUED, RETRIES, DELIVERY_FAILURES, BATCH_SIZE, BATCH_SECONDS, BATCH_WINDOW)

PRIORITIES = ("audit", "debug", "info", "warn", "error", "critical", "sample")


class NotificationEndpoint:
    """Writes one batch, in arrival order, and says what to do with it: HANDLED or REQUEUE."""

    def __init__(
        self,
        settings: VimListenerSettings,
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
        self._takes_samples = bool(settings.sample_topics)
        vim = settings.vim_id
        self._vim = vim
        self._received, self._written = RECEIVED.labels(vim), WRITTEN.labels(vim)
        self._requeued, self._retries = REQUEUED.labels(vim), RETRIES.labels(vim)
        self._delivery_failures = DELIVERY_FAILURES.labels(vim)
        self._batch_size, self._batch_seconds = BATCH_SIZE.labels(vim), BATCH_SECONDS.labels(vim)
        self._batch_window = BATCH_WINDOW.labels(vim)
        self._batch_window.set(settings.batch_timeout)

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
            self._written.inc(result.written)
            if not result.failed:
                self._backoff.reset()
                return self._handled
            self._delivery_failures.inc(len(result.failed))
            pending = result.failed
            if self._stop.is_set() or time.monotonic() - held_since > self._settings.hold_max_seconds:
                LOG.warning("requeueing %d notifications to RabbitMQ: %s", len(records), result.first_error)
                return self._requeue
            delay = self._backoff.next_delay()
            self._stop.wait(delay)
            self._retries.inc()
            LOG.warning(
                "kafka refused %d of %d records (%s); holding the batch, retry after %.1fs",
                len(result.failed),
                len(records),
                result.first_error,
                delay,
            )

    def handle(self, messages: Sequence[tuple[str, dict[str, Any]]]) -> Any:
        """messages: (priority, oslo message dict) pairs in the order RabbitMQ delivered them."""
        # What is logged meanwhile is about this VIM (a process may serve several).
        with vim_bound(self._vim):
            return self._handle(messages)

    def _handle(self, messages: Sequence[tuple[str, dict[str, Any]]]) -> Any:
        started = time.monotonic()
        self._received.inc(len(messages))
        self._batch_size.observe(len(messages))
        if self._set_window is not None:
            window = self.window.observe(len(messages), self._applied_window, started)
            # Applied from oslo's next poll on; a change under a millisecond is not worth a write.
            if abs(window - self._applied_window) >= 0.001:
                self._set_window(window)
                self._applied_window = window
                self._batch_window.set(window)
        received_at = datetime.now(UTC)
        # A sample message about several VMs becomes one record per VM (keyed by it).
        to_write = _split_sample_messages(messages) if self._takes_samples else messages
        records = [
            build_raw_record(
                m, priority, self._settings.vim_id, received_at, self._settings.max_message_bytes
            )
            for priority, m in to_write
        ]
        outcome = self._write_holding_the_batch(records)
        self._batch_seconds.observe(time.monotonic() - started)
        if outcome is self._requeue:
            self._requeued.inc(len(messages))
            return outcome
        for record in records:
            if isinstance(record, DeadLetter):
                DEAD_LETTERED.labels(self._vim, record.reason).inc()
                LOG.warning("dead-lettered a notification: %s", record.reason)
        return self._handled


def _split_sample_messages(
    messages: Sequence[tuple[str, dict[str, Any]]],
) -> Sequence[tuple[str, Mapping[str, Any]]]:
    """A Ceilometer sample message about several instances (a polling batch) as one per
    instance, so that each raw record is keyed by its VM (schemas.raw.split_samples)."""
    if not any(priority == "sample" for priority, _ in messages):
        return messages
    split: list[tuple[str, Mapping[str, Any]]] = []
    for priority, message in messages:
        if priority == "sample":
            split.extend((priority, share) for share in split_samples(message))
        else:
            split.append((priority, message))
    return split


def forget_vim(vim: str) -> None:
    """Drop the series of a VIM this process no longer serves: the labels stay bounded by the
    VIMs file."""
    for metric in _BY_VIM:
        with contextlib.suppress(KeyError):
            metric.remove(vim)
    for labels in [labels for labels in _dead_letter_labels() if labels[0] == vim]:
        with contextlib.suppress(KeyError):
            DEAD_LETTERED.remove(*labels)


def _dead_letter_labels() -> list[tuple[str, ...]]:
    """The (vim, reason) pairs DEAD_LETTERED has series for, from its public samples."""
    return [
        (sample.labels["vim"], sample.labels["reason"])
        for family in DEAD_LETTERED.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    ]


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
