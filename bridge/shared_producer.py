"""One Kafka producer for every VIM of a process, each VIM waiting only on its own records.

A producer per VIM would cost each VIM librdkafka's threads, buffers and broker connections. A
shared one must not couple the VIMs: `Producer.flush()` waits for every record in the queue, so a
VIM flushing its batch would wait on a flooding VIM's records too. So each VIM writes through a
`ProducerLane`, which looks like a producer to bridge.kafka_delivery.produce_and_confirm (and to
the poller's checkpoints) but whose `flush` waits only for the delivery reports of the records
produced through it. One thread serves the producer's delivery reports for all lanes.

Each lane may hold at most its share of the process's budget of bytes produced but not yet
acknowledged (at least one record at a time): a lane over its share gets BufferError, which
produce_and_confirm answers by waiting for its own reports. A flooding VIM so never fills the
producer's queue under the others, and never queues more than its share ahead of their records.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

LOG = logging.getLogger(__name__)

# How long the report thread waits for a report before it looks for a stop: a report ends the
# wait at once, so this costs only a wakeup a second while idle.
_REPORT_WAIT_SECONDS = 1.0


class SharedProducer:
    """The producer, its report-serving thread, and the lanes writing through it."""

    def __init__(self, producer: Any, budget_bytes: int) -> None:
        self.producer = producer
        self.budget_bytes = budget_bytes
        self._lanes: dict[str, ProducerLane] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve_reports, name="kafka-reports", daemon=True)

    def start(self) -> SharedProducer:
        self._thread.start()
        return self

    def _serve_reports(self) -> None:
        while not self._stop.is_set():
            try:
                self.producer.poll(_REPORT_WAIT_SECONDS)
            except Exception:  # a failing callback must not end the reports of every lane
                LOG.exception("serving Kafka delivery reports failed")

    def lane(self, name: str) -> ProducerLane:
        """The lane of `name` (a VIM), made on first use; every lane's share is then recomputed."""
        with self._lock:
            lane = self._lanes.get(name)
            if lane is None:
                lane = self._lanes[name] = ProducerLane(self.producer, name, self._share)
            return lane

    def close_lane(self, name: str) -> None:
        with self._lock:
            self._lanes.pop(name, None)

    def _share(self) -> int:
        """A lane's share: an equal part of the budget among the lanes open now."""
        return self.budget_bytes // max(1, len(self._lanes))

    def stop(self, timeout: float) -> int:
        """Flush what is left, stop the report thread; the number of records left unconfirmed."""
        left = int(self.producer.flush(timeout))
        self._stop.set()
        self._thread.join(timeout=_REPORT_WAIT_SECONDS + 1)
        return left


class ProducerLane:
    """One VIM's view of the shared producer: produce, wait for its own reports, read metadata."""

    def __init__(self, producer: Any, name: str, share: Callable[[], int]) -> None:
        self._producer = producer
        self.name = name
        self._share = share
        self._changed = threading.Condition()
        self.outstanding = 0
        self.outstanding_bytes = 0

    def produce(
        self,
        topic: str,
        key: bytes | None = None,
        value: bytes | None = None,
        headers: Any = None,
        on_delivery: Callable[[Any, Any], object] | None = None,
        partition: int = -1,
    ) -> None:
        size = len(key or b"") + len(value or b"")
        with self._changed:
            if self.outstanding and self.outstanding_bytes + size > self.share:
                raise BufferError(f"vim {self.name}: its share of the producer's queue is full")
            self.outstanding += 1
            self.outstanding_bytes += size

        def delivered(error: Any, message: Any) -> None:
            with self._changed:
                self.outstanding -= 1
                self.outstanding_bytes -= size
                self._changed.notify_all()
            if on_delivery is not None:
                on_delivery(error, message)

        try:
            self._producer.produce(
                topic, key=key, value=value, headers=headers, on_delivery=delivered, partition=partition
            )
        except BaseException:
            with self._changed:
                self.outstanding -= 1
                self.outstanding_bytes -= size
            raise

    @property
    def share(self) -> int:
        """The bytes this lane may have produced and not yet acknowledged (now)."""
        return self._share()

    def poll(self, timeout: float) -> int:
        """Wait up to `timeout` for one of this lane's reports (the report thread serves them)."""
        with self._changed:
            if self.outstanding:
                self._changed.wait(timeout)
        return 0

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every record of this lane is acknowledged or refused; the number left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while self.outstanding:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self.outstanding

    def list_topics(self, *args: Any, **kwargs: Any) -> Any:
        return self._producer.list_topics(*args, **kwargs)
