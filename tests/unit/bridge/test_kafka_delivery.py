"""produce_and_confirm says exactly which records Kafka did not take."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from bridge import kafka_error_internals
from bridge.kafka_delivery import Delivery, ProduceRequest, produce_and_confirm
from tests.support.fake_message import FakeMessage


class Producer:
    def __init__(self, refuse_partition: int | None = None, report_error_for: bytes | None = None) -> None:
        self.refuse_partition = refuse_partition
        self.report_error_for = report_error_for
        self.pending: list = []
        self.flushed = 0

    def produce(self, topic, key=None, value=None, headers=None, on_delivery=None, partition=-1):
        if partition is not None and partition == self.refuse_partition:
            raise KafkaException(KafkaError(kafka_error_internals.UNKNOWN_PARTITION))
        self.pending.append((topic, key, value, on_delivery))

    def poll(self, _timeout):
        return 0

    def flush(self, _timeout=None):
        self.flushed += 1
        for topic, key, value, callback in self.pending:
            callback("refused" if value == self.report_error_for else None, FakeMessage(topic, key, value))
        self.pending = []
        return 0


def test_a_record_refused_at_produce_is_failed_and_the_others_go_on():
    producer = Producer(refuse_partition=9)
    requests = [ProduceRequest("t", b"k", b"a", partition=1), ProduceRequest("t", b"k", b"b", partition=9)]
    requests.append(ProduceRequest("t", b"k", b"c"))
    delivery = produce_and_confirm(producer, requests, 1.0)
    assert delivery.failed == [1] and "Unknown partition" in delivery.first_error
    assert producer.flushed == 1


def test_refused_deliveries_and_missing_reports_count_as_failed():
    producer = Producer(report_error_for=b"b")
    delivery = produce_and_confirm(producer, [ProduceRequest("t", None, v) for v in (b"a", b"b", b"c")], 1.0)
    assert delivery.failed == [1] and delivery.first_error == "refused"

    class Stuck(Producer):
        """The flush times out with a record neither acknowledged nor refused."""

        def flush(self, _timeout=None):
            self.pending = []
            return 1

    delivery = produce_and_confirm(Stuck(), [ProduceRequest("t", None, v) for v in (b"a", b"b")], 1.0)
    assert delivery.failed == [0, 1] and "unconfirmed" in delivery.first_error


def test_a_producer_reporting_only_errors_is_confirmed_by_an_empty_queue():
    """With delivery.report.only.error, an acknowledged record has no report at all."""

    class OnlyErrors(Producer):
        def flush(self, _timeout=None):
            for topic, key, value, callback in self.pending:
                if value == self.report_error_for:
                    callback("refused", FakeMessage(topic, key, value))
            self.pending = []
            return 0

    requests = [ProduceRequest("t", b"k", v) for v in (b"a", b"b", b"c", b"b")]
    assert produce_and_confirm(OnlyErrors(), requests, 1.0) == Delivery([], "")
    delivery = produce_and_confirm(OnlyErrors(report_error_for=b"b"), requests, 1.0)
    # A refused record is known by its content: its twin is written again too, never lost.
    assert delivery.failed == [1, 3] and delivery.first_error == "refused"


def test_a_request_without_a_partition_is_left_to_the_producers_partitioner():
    seen: list[int] = []

    class Recording(Producer):
        def produce(self, topic, key=None, value=None, headers=None, on_delivery=None, partition=-1):
            seen.append(partition)
            super().produce(topic, key, value, headers, on_delivery, partition)

    requests = [ProduceRequest("t", b"k", b"a"), ProduceRequest("t", b"k", b"b", partition=3)]
    assert produce_and_confirm(Recording(), requests, 1.0).failed == []
    # librdkafka's RD_KAFKA_PARTITION_UA: its partitioner decides from the key.
    assert seen == [-1, 3]


def test_every_confirmed_writer_reports_only_refusals_and_settles_within_its_timeout():
    from bridge.kafka_config import confirmed_producer_config
    from bridge.settings import CommonSettings

    config = confirmed_producer_config(CommonSettings(), "listen-x", 12.5)
    assert config["delivery.report.only.error"] is True
    assert config["message.timeout.ms"] == 12_500
    assert config["client.id"].endswith("listen-x")
