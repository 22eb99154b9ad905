"""One producer for many VIMs: each VIM's wait ends with its own delivery reports, and a VIM over
its share of the in-flight budget waits for its own records, never another's."""

from __future__ import annotations

import threading
import time
from typing import Any

from bridge.kafka_delivery import ProduceRequest, produce_and_confirm
from bridge.shared_producer import SharedProducer
from tests.support.fake_message import FakeMessage


class FakeError:
    def __str__(self) -> str:
        return "refused"


class HeldProducer:
    """librdkafka's part: records are queued; the test decides when each one's report comes,
    served by the shared producer's report thread through poll()."""

    def __init__(self) -> None:
        self.queued: list[tuple[FakeMessage, Any]] = []
        self.release: list[tuple[FakeMessage, Any, Any]] = []
        self.lock = threading.Lock()
        self.flushes = 0

    def produce(
        self,
        topic: str,
        key: Any = None,
        value: Any = None,
        headers: Any = None,
        on_delivery: Any = None,
        partition: int = -1,
    ) -> None:
        with self.lock:
            self.queued.append((FakeMessage(topic, key, value), on_delivery))

    def deliver(self, topic: str, error: Any = None) -> None:
        """Report every queued record of `topic` (acknowledged, or refused with `error`)."""
        with self.lock:
            for message, callback in [q for q in self.queued if q[0].topic() == topic]:
                self.queued.remove((message, callback))
                self.release.append((message, callback, error))

    def poll(self, timeout: float) -> int:
        with self.lock:
            ready, self.release = self.release, []
        for message, callback, error in ready:
            callback(error, message)
        if not ready:
            time.sleep(min(timeout, 0.01))
        return len(ready)

    def flush(self, timeout: float) -> int:
        self.flushes += 1
        return len(self.queued)

    def list_topics(self, *args: Any, **kwargs: Any) -> str:
        return "metadata"


def test_a_lane_s_flush_waits_for_its_own_records_only():
    producer = HeldProducer()
    shared = SharedProducer(producer, budget_bytes=1_000_000).start()
    try:
        flooding, quiet = shared.lane("flood_1"), shared.lane("quiet_1")
        for _ in range(100):
            flooding.produce("flood", value=b"x" * 100)
        quiet.produce("quiet", value=b"q")
        producer.deliver("quiet")
        started = time.monotonic()
        assert quiet.flush(5) == 0
        assert time.monotonic() - started < 1
        # The flooding lane's records are still unreported; its own flush says so after its wait.
        assert flooding.flush(0.1) == 100
        producer.deliver("flood")
        assert flooding.flush(5) == 0
        assert producer.flushes == 0  # the shared producer's flush is for the process's exit only
    finally:
        shared.stop(1)


def test_produce_and_confirm_through_a_lane_sees_its_refusals():
    producer = HeldProducer()
    shared = SharedProducer(producer, budget_bytes=1_000_000).start()
    try:
        lane = shared.lane("one_1")
        requests = [ProduceRequest("raw", b"k", b"v1"), ProduceRequest("dlq", b"k", b"v2")]
        threading.Timer(0.05, lambda: (producer.deliver("raw"), producer.deliver("dlq", FakeError()))).start()
        delivery = produce_and_confirm(lane, requests, delivery_timeout=5)
        assert delivery.failed == [1] and delivery.first_error == "refused"
        assert lane.outstanding == 0 and lane.outstanding_bytes == 0
    finally:
        shared.stop(1)


def test_a_lane_over_its_share_waits_for_its_own_reports():
    producer = HeldProducer()
    shared = SharedProducer(producer, budget_bytes=2_000).start()
    try:
        lane, other = shared.lane("a_1"), shared.lane("b_1")  # a share of 1,000 bytes each
        lane.produce("a", value=b"x" * 600)
        try:
            lane.produce("a", value=b"x" * 600)
            raise AssertionError("a lane over its share must get BufferError")
        except BufferError as exc:
            assert "a_1" in str(exc)
        other.produce("b", value=b"y" * 600)  # the other lane is not affected
        # A record alone may exceed the share: a lane with nothing in flight always gets one.
        other_alone = shared.lane("c_1")
        other_alone.produce("c", value=b"z" * 5_000)
        # produce_and_confirm waits on the lane (poll) and then produces: it gets through once
        # the lane's own records are reported.
        threading.Timer(0.05, lambda: producer.deliver("a")).start()
        threading.Timer(0.3, lambda: producer.deliver("a")).start()
        delivery = produce_and_confirm(lane, [ProduceRequest("a", None, b"x" * 600)], delivery_timeout=5)
        assert delivery.failed == []
    finally:
        shared.stop(1)


def test_closing_a_lane_gives_its_share_back():
    shared = SharedProducer(HeldProducer(), budget_bytes=3_000)
    lanes = [shared.lane(name) for name in ("a_1", "b_1", "c_1")]
    assert lanes[0].share == 1_000
    shared.close_lane("c_1")
    assert lanes[0].share == 1_500
    assert shared.lane("a_1") is lanes[0]
