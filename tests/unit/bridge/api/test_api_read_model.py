"""KafkaReadModel's replay and readiness logic, over an in-process fake of the consumer."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from bridge import kafka_error_internals
from bridge.api.read_model import KafkaReadModel
from bridge.settings import ApiSettings
from tests.unit.bridge.api.api_records import VIM_A, state_record

TOPIC = "eventfed.vm.state"


class FakeError:
    def __init__(self, code: int) -> None:
        self._code = code

    def code(self) -> int:
        return self._code

    def __str__(self) -> str:
        return f"error {self._code}"


class FakeMessage:
    def __init__(
        self,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        error: FakeError | None = None,
    ) -> None:
        self._partition, self._offset, self._key, self._value, self._error = (
            partition,
            offset,
            key,
            value,
            error,
        )

    def error(self) -> FakeError | None:
        return self._error

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def topic(self) -> str:
        return TOPIC


class FakeTopicMetadata:
    def __init__(self, partitions: list[int], error: Any = None) -> None:
        self.partitions = {p: object() for p in partitions}
        self.error = error


class FakeMetadata:
    def __init__(self, topics: dict[str, FakeTopicMetadata]) -> None:
        self.topics = topics


class FakeBroker:
    """A topic's partitions as lists of (key, value) records, shared with the fake consumer."""

    def __init__(self, partitions: int = 2) -> None:
        self.lock = threading.Lock()
        self.logs: dict[int, list[tuple[bytes | None, bytes | None]]] = {p: [] for p in range(partitions)}
        self.topic_exists = True
        self.reachable = True

    def produce(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        with self.lock:
            self.logs[partition].append((key, value))


class FakeConsumer:
    def __init__(self, broker: FakeBroker, config: dict[str, Any]) -> None:
        self.broker = broker
        self.config = config
        self.positions: dict[int, int] = {}
        self.eof_sent: set[int] = set()
        self.closed = False
        self.pending: deque[FakeMessage] = deque()

    def list_topics(self, topic: str, timeout: float) -> FakeMetadata:
        if not self.broker.reachable:
            raise KafkaException(KafkaError(kafka_error_internals.TRANSPORT, "broker down"))
        if not self.broker.topic_exists:
            return FakeMetadata(
                {topic: FakeTopicMetadata([], error=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))}
            )
        with self.broker.lock:
            return FakeMetadata({topic: FakeTopicMetadata(list(self.broker.logs))})

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float, cached: bool
    ) -> tuple[int, int]:
        with self.broker.lock:
            return 0, len(self.broker.logs[partition.partition])

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.positions[tp.partition] = 0

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        batch: list[FakeMessage] = []
        with self.broker.lock:
            for partition, position in self.positions.items():
                log = self.broker.logs[partition]
                while position < len(log) and len(batch) < num_messages:
                    key, value = log[position]
                    batch.append(FakeMessage(partition, position, key, value))
                    position += 1
                    self.eof_sent.discard(partition)
                self.positions[partition] = position
                if position == len(log) and partition not in self.eof_sent:
                    self.eof_sent.add(partition)
                    batch.append(
                        FakeMessage(
                            partition, position, None, None, FakeError(kafka_error_internals.PARTITION_EOF)
                        )
                    )
        if not batch:
            time.sleep(min(timeout, 0.01))
        return batch

    def close(self) -> None:
        self.closed = True


def record(instance_id: str, **fields: Any) -> tuple[bytes, bytes]:
    return f"{VIM_A}/{instance_id}".encode(), json.dumps(state_record(VIM_A, instance_id, **fields)).encode()


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def consumers() -> list[FakeConsumer]:
    return []


@pytest.fixture
def model(broker: FakeBroker, consumers: list[FakeConsumer]) -> Any:
    def factory(config: dict[str, Any]) -> FakeConsumer:
        consumer = FakeConsumer(broker, config)
        consumers.append(consumer)
        return consumer

    created: list[KafkaReadModel] = []

    def make(on_caught_up: Any = None, **settings: Any) -> KafkaReadModel:
        read_model = KafkaReadModel(
            ApiSettings(state_topic=TOPIC, **settings),
            consumer_factory=factory,  # type: ignore[arg-type]
            on_caught_up=on_caught_up,
        )
        created.append(read_model)
        return read_model

    yield make
    for read_model in created:
        read_model.stop()


def test_replays_the_topic_then_is_ready(
    broker: FakeBroker, model: Any, consumers: list[FakeConsumer]
) -> None:
    for number in range(50):
        broker.produce(number % 2, *record(f"vm-{number:02d}"))
    broker.produce(0, *record("vm-00", state="stopped", status="POWER_OFF"))
    broker.produce(1, f"{VIM_A}/vm-01".encode(), None)
    read_model = model()
    assert not read_model.caught_up
    readiness = read_model.readiness()
    assert not readiness.ready and readiness.reasons
    read_model.start()
    assert read_model.wait_caught_up(5)
    wait_for(lambda: read_model.readiness().ready)
    table = read_model.table
    assert table.vm_count == 49
    assert table.record(VIM_A, "vm-01") is None
    stopped = table.matching(VIM_A, {"stopped"}, set())
    assert stopped is not None and len(stopped) == 1
    assert read_model.catch_up_seconds is not None and read_model.catch_up_seconds >= 0
    config = consumers[0].config
    assert config["enable.auto.commit"] is False and config["enable.partition.eof"] is True
    assert config["client.id"].endswith("-api")


def test_caught_up_hook_runs_once(broker: FakeBroker, model: Any) -> None:
    calls: list[int] = []
    broker.produce(0, *record("vm-1"))
    read_model: KafkaReadModel = model(on_caught_up=lambda: calls.append(read_model.table.vm_count))
    read_model.start()
    assert read_model.wait_caught_up(5)
    broker.produce(0, *record("vm-2"))
    wait_for(lambda: read_model.table.vm_count == 2)
    assert calls == [1]


def test_keeps_following_after_catching_up(broker: FakeBroker, model: Any) -> None:
    read_model = model()
    read_model.start()
    assert read_model.wait_caught_up(5)
    assert read_model.table.vm_count == 0
    broker.produce(1, *record("late"))
    wait_for(lambda: read_model.table.record(VIM_A, "late") is not None)
    broker.produce(1, f"{VIM_A}/late".encode(), None)
    wait_for(lambda: read_model.table.record(VIM_A, "late") is None)


def test_malformed_records_are_skipped_and_the_thread_survives(broker: FakeBroker, model: Any) -> None:
    broker.produce(0, b"no-slash", b"{}")
    broker.produce(0, f"{VIM_A}/x".encode(), b"{not json")
    broker.produce(0, None, None)
    broker.produce(0, *record("good"))
    read_model = model()
    read_model.start()
    assert read_model.wait_caught_up(5)
    assert read_model.table.vm_count == 1
    assert read_model.table.outcomes["malformed"] == 3
    assert read_model.readiness().ready


def test_not_ready_while_the_topic_is_missing(broker: FakeBroker, model: Any) -> None:
    broker.topic_exists = False
    read_model = model()
    read_model.start()
    wait_for(lambda: "does not exist" in " ".join(read_model.readiness().reasons))
    assert not read_model.caught_up
    assert read_model.readiness().kafka_reachable


def test_not_ready_when_kafka_is_unreachable(broker: FakeBroker, model: Any) -> None:
    broker.reachable = False
    read_model = model()
    read_model.start()
    time.sleep(0.2)
    readiness = read_model.readiness()
    assert not readiness.ready and not readiness.kafka_reachable
    assert any("Kafka is not reachable" in reason for reason in readiness.reasons)


def test_all_brokers_down_makes_it_unready_at_once(broker: FakeBroker, model: Any) -> None:
    read_model = model()
    read_model.start()
    wait_for(lambda: read_model.readiness().ready)
    read_model.on_client_error(KafkaError(kafka_error_internals.ALL_BROKERS_DOWN, "all down"))
    readiness = read_model.readiness()
    assert not readiness.ready and readiness.caught_up and not readiness.kafka_reachable


def test_stop_closes_the_consumer(model: Any, consumers: list[FakeConsumer]) -> None:
    read_model = model()
    read_model.start()
    wait_for(lambda: bool(consumers))
    read_model.stop()
    assert consumers[0].closed
    assert "not running" in " ".join(read_model.readiness().reasons)


def test_cannot_start_twice(model: Any) -> None:
    read_model = model()
    read_model.start()
    with pytest.raises(RuntimeError):
        read_model.start()
