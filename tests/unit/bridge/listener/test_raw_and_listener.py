"""The raw record and the listener's batch logic, with in-process fakes (no broker)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest

from bridge.listener.endpoint import NotificationEndpoint, ordered_batch_listener
from bridge.raw_writer import KafkaBatchWriter
from bridge.retry import Backoff
from bridge.settings import ListenerSettings
from schemas.raw import DeadLetter, RawRecord, build_raw_record, record_key, scrub_context
from tests.support.fake_message import FakeMessage

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def message(payload, event_type="compute.instance.update", ctxt=None, message_id="m-1"):
    return {
        "ctxt": ctxt or {},
        "publisher_id": "compute.h1",
        "event_type": event_type,
        "payload": payload,
        "metadata": {"message_id": message_id, "timestamp": "2026-11-25 12:00:00.000001"},
    }


def test_raw_record_content_key_and_headers():
    record = build_raw_record(
        message({"instance_id": "vm-1", "state": "active"}, ctxt={"user_id": "u", "auth_token": "T0KEN"}),
        "info",
        "own_reg",
        NOW,
        10_000,
    )
    assert isinstance(record, RawRecord)
    assert record.key == b"vm-1"
    assert dict(record.headers) == {
        "vim_id": b"own_reg",
        "event_type": b"compute.instance.update",
        "message_id": b"m-1",
    }
    body = json.loads(record.value)
    assert body["priority"] == "INFO" and body["vim_id"] == "own_reg"
    assert body["received_at"] == NOW.isoformat()
    assert body["context"] == {"user_id": "u"}
    assert body["timestamp"] == "2026-11-25 12:00:00.000001"


def test_keys_of_both_formats_and_of_other_notifications():
    assert record_key("x", {"nova_object.data": {"uuid": "vm-2"}}, "p") == b"vm-2"
    assert record_key("x", {"instance_id": "vm-3"}, "p") == b"vm-3"
    assert record_key("aggregate.create.end", {"aggregate_id": 1}, "nova-api:h") == b"nova-api:h"
    assert record_key(None, "not a dict", None) == b"unknown"


def test_scrub_context_removes_secrets():
    ctxt = {
        "auth_token": "a",
        "service_token": "b",
        "password": "c",
        "service_catalog": [1],
        "user_id": "u",
        "request_id": "r",
    }
    assert scrub_context(ctxt) == {"user_id": "u", "request_id": "r"}
    assert scrub_context("nonsense") == {}


def test_oversize_and_unserialisable_messages_become_dead_letters():
    big = build_raw_record(message({"instance_id": "vm", "blob": "x" * 5000}), "info", "o_r", NOW, 4096)
    assert isinstance(big, DeadLetter) and big.reason == "oversize"
    assert len(big.value) <= 4096 and dict(big.headers)["eventfed.original.size"] > b"5000"
    nan = build_raw_record(message({"instance_id": "vm", "x": float("nan")}), "info", "o_r", NOW, 4096)
    assert isinstance(nan, DeadLetter) and nan.reason == "not_serializable"


def test_backoff_grows_caps_and_resets():
    backoff = Backoff(0.5, 4.0)
    delays = [backoff.next_delay() for _ in range(6)]
    assert 0.4 <= delays[0] <= 0.5 and delays[-1] <= 4.0 and delays[3] >= 3.2
    assert backoff.attempts == 6
    backoff.reset()
    assert 0.4 <= backoff.next_delay() <= 0.5


class FakeProducer:
    """Delivers on flush; fails the first `fail_times` flushes' records."""

    def __init__(self, fail_times: int = 0) -> None:
        self.fail_times = fail_times
        self.pending: list = []
        self.delivered: list[tuple[str, bytes]] = []

    def produce(self, topic, key, value, headers, on_delivery, partition=-1):
        self.pending.append((topic, key, value, on_delivery))

    def poll(self, _timeout):
        return 0

    def flush(self, _timeout=None):
        failing = self.fail_times > 0
        self.fail_times -= 1
        for topic, key, value, callback in self.pending:
            msg = FakeMessage(topic, key, value)
            if failing:
                callback("broker down", msg)
            else:
                self.delivered.append((topic, value))
                callback(None, msg)
        self.pending = []
        return 0


def settings(**overrides):
    values = {
        "transport_url": "fake://",
        "vim_id": "own_reg",
        "retry_backoff_initial": 0.01,
        "retry_backoff_max": 0.02,
    }
    return ListenerSettings(**{**values, **overrides})


def test_endpoint_holds_the_batch_until_kafka_has_it():
    import oslo_messaging

    producer = FakeProducer(fail_times=2)
    writer = KafkaBatchWriter(producer, "raw", "dlq", 1.0)  # type: ignore[arg-type]
    endpoint = NotificationEndpoint(settings(), writer, threading.Event())
    batch = [("info", message({"instance_id": "vm", "seq": i}, message_id=f"m{i}")) for i in range(5)]
    assert endpoint.handle(batch) == oslo_messaging.NotificationResult.HANDLED
    assert [json.loads(v)["payload"]["seq"] for _, v in producer.delivered] == [0, 1, 2, 3, 4]


def test_endpoint_requeues_when_asked_to_stop_while_kafka_refuses():
    import oslo_messaging

    stop = threading.Event()
    stop.set()
    writer = KafkaBatchWriter(FakeProducer(fail_times=100), "raw", "dlq", 1.0)  # type: ignore[arg-type]
    endpoint = NotificationEndpoint(settings(), writer, stop)
    result = endpoint.handle([("info", message({"instance_id": "vm"}))])
    assert result == oslo_messaging.NotificationResult.REQUEUE


@pytest.mark.filterwarnings("ignore")
def test_dispatch_over_the_fake_transport_hands_over_priority_and_message_in_order():
    """oslo's fake:// bus keeps a queue per priority (RabbitMQ's pooled queue holds them all, in
    order: tests/integration/test_listener.py proves that order); each stays in send order here."""
    import oslo_messaging
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    conf([], project="eventfed-unit", default_config_files=[], default_config_dirs=[])
    oslo_messaging.set_transport_defaults(control_exchange="nova")
    transport = oslo_messaging.get_notification_transport(conf, url="fake://")
    seen: list[tuple[str, int]] = []
    done = threading.Event()

    class Recorder:
        def handle(self, messages):
            seen.extend((priority, m["payload"]["seq"]) for priority, m in messages)
            if len(seen) >= 6:
                done.set()
            return oslo_messaging.NotificationResult.HANDLED

    target = oslo_messaging.Target(topic="notifications", exchange="nova")
    server = ordered_batch_listener(transport, [target], Recorder(), "pool-1", 10, 0.5)  # type: ignore[arg-type]
    server.start()
    time.sleep(0.5)  # the fake bus drops what is sent before the listener's queue exists
    try:
        notifier = oslo_messaging.Notifier(
            transport, publisher_id="compute.h", driver="messagingv2", topics=["notifications"]
        )
        for seq, priority in enumerate(["info", "info", "error", "info", "error", "info"]):
            getattr(notifier, priority)({}, "compute.instance.update", {"seq": seq})
        assert done.wait(10)
    finally:
        server.stop()
        server.wait()
        transport.cleanup()
    assert [s for p, s in seen if p == "info"] == [0, 1, 3, 5]
    assert [s for p, s in seen if p == "error"] == [2, 4]
