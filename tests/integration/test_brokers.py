"""The real brokers behave as eventfed relies on: Kafka with our client defaults, aiokafka
(Faust's client) against the same broker, and oslo.messaging configured the way Nova is."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from bridge.kafka_config import KeyPartitioner, consumer_config, producer_config
from bridge.settings import CommonSettings

pytestmark = pytest.mark.integration


def _settings(bootstrap: str) -> CommonSettings:
    return CommonSettings(kafka_bootstrap_servers=bootstrap)


@pytest.mark.parametrize("partitions", [8, 5])
def test_key_partitioner_agrees_with_the_producers_partitioner(
    kafka_bootstrap, kafka_topic_factory, unique, partitions
):
    # The listener packs notifications onto the partition KeyPartitioner gives their key; the
    # producer's own partitioner puts a single keyed record there too, or per-VM order breaks.
    import uuid

    topic = kafka_topic_factory(f"test.partitioner.{unique}.{partitions}", partitions=partitions)
    producer = Producer(producer_config(_settings(kafka_bootstrap), "test"))
    landed: dict[bytes, int] = {}

    def on_delivery(err, msg):
        assert err is None, err
        landed[msg.key()] = msg.partition()

    keys = [str(uuid.uuid4()).encode() for _ in range(2000)]
    for key in keys:
        producer.produce(topic, key=key, value=b"x", on_delivery=on_delivery)
    assert producer.flush(30) == 0
    partitioner = KeyPartitioner(partitions)
    assert {key: partitioner(key) for key in keys} == landed
    assert len(set(landed.values())) == partitions


def test_confluent_kafka_produce_consume_commit_and_reread(kafka_bootstrap, kafka_topic_factory, unique):
    topic = kafka_topic_factory(f"test.brokers.{unique}", partitions=4)
    settings = _settings(kafka_bootstrap)
    producer = Producer(producer_config(settings, "test"))
    delivered: list[tuple[bytes, int]] = []

    def on_delivery(err, msg):
        assert err is None, err
        delivered.append((msg.key(), msg.partition()))

    for i in range(40):
        producer.produce(topic, key=f"vm-{i % 8}".encode(), value=str(i).encode(), on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert len(delivered) == 40
    # The same key always lands on the same partition (murmur2, as Java and aiokafka do it).
    partitions_by_key: dict[bytes, set[int]] = {}
    for key, partition in delivered:
        partitions_by_key.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partitions_by_key.values())
    # Eight keys over four partitions: the keys are spread, not all on one partition.
    assert len({next(iter(p)) for p in partitions_by_key.values()}) > 1

    group = f"test-group-{unique}"
    consumer = Consumer(consumer_config(settings, "test", group))
    consumer.subscribe([topic])
    seen: list[int] = []
    deadline = time.monotonic() + 30
    while len(seen) < 25 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        seen.append(int(msg.value()))
        consumer.store_offsets(msg)
    assert len(seen) == 25
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, p) for p in range(4)], timeout=10)
    assert sum(tp.offset for tp in committed if tp.offset >= 0) == 25
    consumer.close()

    # A new consumer in the same group resumes from the commit: it reads the other 15.
    consumer = Consumer(consumer_config(settings, "test", group))
    consumer.subscribe([topic])
    rest: list[int] = []
    deadline = time.monotonic() + 30
    while len(rest) < 15 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        rest.append(int(msg.value()))
    consumer.close()
    assert sorted(seen + rest) == list(range(40))


def test_aiokafka_produces_and_consumes_on_the_same_broker(kafka_bootstrap, kafka_topic_factory, unique):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = kafka_topic_factory(f"test.aiokafka.{unique}", partitions=4)

    async def roundtrip() -> list[tuple[bytes, int]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topic, key=b"vm-1", value=str(i).encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, group_id=f"g-{unique}", auto_offset_reset="earliest"
        )
        await consumer.start()
        out: list[tuple[bytes, int]] = []
        try:
            while len(out) < 10:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    out.extend((r.value, r.partition) for r in records)
            await consumer.commit()
        finally:
            await consumer.stop()
        return out

    records = asyncio.run(asyncio.wait_for(roundtrip(), timeout=60))
    assert [int(v) for v, _ in records] == list(range(10))
    assert len({p for _, p in records}) == 1

    # librdkafka's murmur2 partitioner agrees with aiokafka's default partitioner for the same key.
    producer = Producer(producer_config(_settings(kafka_bootstrap), "test"))
    partitions: list[int] = []
    producer.produce(
        topic, key=b"vm-1", value=b"x", on_delivery=lambda e, m: partitions.append(m.partition())
    )
    producer.flush(30)
    assert partitions == [records[0][1]]


def test_oslo_notifier_configured_as_nova_reaches_a_pooled_listener(rabbit_url, unique):
    import oslo_messaging
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    conf([], project="eventfed-test")
    oslo_messaging.set_transport_defaults(control_exchange="nova")
    transport = oslo_messaging.get_notification_transport(conf, url=rabbit_url)
    topic = f"notifications_{unique}"
    received: list[dict] = []
    done = threading.Event()

    class Endpoint:
        def info(self, ctxt, publisher_id, event_type, payload, metadata):
            received.append(
                {
                    "publisher_id": publisher_id,
                    "event_type": event_type,
                    "payload": payload,
                    "metadata": metadata,
                }
            )
            done.set()
            return oslo_messaging.NotificationResult.HANDLED

    listener = oslo_messaging.get_notification_listener(
        transport,
        [oslo_messaging.Target(topic=topic, exchange="nova")],
        [Endpoint()],
        executor="threading",
        pool=f"eventfed-test-{unique}",
    )
    listener.start()
    try:
        notifier = oslo_messaging.Notifier(
            transport, publisher_id="compute.host-1", driver="messagingv2", topics=[topic]
        )
        payload = {"instance_id": "6b8f5b3e-0000-4000-8000-000000000001", "state": "active"}
        # The listener's queue exists once it started; retry the send until it is delivered.
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            notifier.info({}, "compute.instance.power_off.start", payload)
            done.wait(2)
    finally:
        listener.stop()
        listener.wait()
        transport.cleanup()
    assert received, "the listener received nothing"
    first = received[0]
    assert first["event_type"] == "compute.instance.power_off.start"
    assert first["publisher_id"] == "compute.host-1"
    assert first["payload"] == payload
    assert set(first["metadata"]) >= {"message_id", "timestamp"}
