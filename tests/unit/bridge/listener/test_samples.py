"""Ceilometer's samples through the listener: one raw record per VM, keyed by it, after Kafka."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from bridge.listener.endpoint import NotificationEndpoint
from bridge.raw_writer import KafkaBatchWriter
from bridge.settings import ListenerSettings
from tests.unit.bridge.listener.test_raw_and_listener import FakeProducer, settings

CAPTURED = Path(__file__).resolve().parents[3] / "fixtures" / "ceilometer"
A, B = "aaaaaaaa-0000-4000-8000-000000000000", "bbbbbbbb-0000-4000-8000-000000000000"


class KeyedProducer(FakeProducer):
    """Also keeps each record's key, in produce order."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[bytes] = []

    def produce(self, topic, key, value, headers, on_delivery, partition=-1):  # type: ignore[no-untyped-def]
        self.keys.append(key)
        super().produce(topic, key, value, headers, on_delivery, partition)


def oslo_message(event_type: str, payload: object) -> dict:
    """What oslo's dispatcher hands over for a captured message."""
    return {"ctxt": {}, "publisher_id": "ceilometer.polling", "event_type": event_type, "payload": payload,
            "metadata": {"message_id": "env-1", "timestamp": "2026-12-07 06:38:07.725231"}}  # fmt: skip


def sample(instance: str, resource: str, mid: str) -> dict:
    return {"counter_name": "cpu", "resource_id": resource, "message_id": mid,
            "resource_metadata": {"instance_id": instance}}  # fmt: skip


def test_sample_topics_are_off_by_default_and_comma_separated() -> None:
    assert settings().sample_topics == []
    chosen = ListenerSettings(
        transport_url="rabbit://h/", vim_id="o_r", sample_topics="metering, notifications"
    )
    assert (chosen.sample_exchange, chosen.sample_topics) == ("ceilometer", ["metering", "notifications"])


def test_a_polling_batch_of_several_vms_is_written_one_record_per_vm_keyed_by_it() -> None:
    import oslo_messaging

    producer = KeyedProducer()
    writer = KafkaBatchWriter(producer, "raw", "dlq", 1.0)  # type: ignore[arg-type]
    endpoint = NotificationEndpoint(settings(sample_topics=["notifications"]), writer, threading.Event())
    batch = [
        ("sample", oslo_message("telemetry.polling", {"samples": [
            sample(A, A, "1"), sample(B, f"{B}-vda", "2"), sample(A, f"instance-1-{A}-tap0", "3")]})),
        ("info", {"ctxt": {}, "publisher_id": "compute.h", "event_type": "compute.instance.update",
                  "payload": {"instance_id": A}, "metadata": {"message_id": "n-1"}}),
    ]  # fmt: skip
    assert endpoint.handle(batch) == oslo_messaging.NotificationResult.HANDLED
    assert producer.keys == [A.encode(), B.encode(), A.encode()]
    first, second, third = (json.loads(value) for _, value in producer.delivered)
    assert [s["message_id"] for s in first["payload"]["samples"]] == ["1", "3"]
    assert [s["message_id"] for s in second["payload"]["samples"]] == ["2"]
    assert first["priority"] == "SAMPLE" and first["event_type"] == "telemetry.polling"
    assert third["event_type"] == "compute.instance.update"


def test_a_real_notifier_publisher_message_is_one_record_keyed_by_its_instance() -> None:
    producer = KeyedProducer()
    writer = KafkaBatchWriter(producer, "raw", "dlq", 1.0)  # type: ignore[arg-type]
    endpoint = NotificationEndpoint(settings(sample_topics=["metering"]), writer, threading.Event())
    decoded = json.loads((CAPTURED / "001-nova.compute.instance.create.end--metering.sample--metering.json")
                         .read_text())["decoded"]  # fmt: skip
    endpoint.handle([("sample", oslo_message(decoded["event_type"], decoded["payload"]))])
    [(_, value)] = producer.delivered
    assert producer.keys == [b"c91edb31-de52-4ec3-9d0d-cc98c81a0a11"]
    assert len(json.loads(value)["payload"]) == 5
