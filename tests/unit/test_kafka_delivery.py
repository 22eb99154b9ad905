"""produce_and_confirm says exactly which records Kafka did not take."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from bridge.kafka_delivery import ProduceRequest, produce_and_confirm


class Producer:
    def __init__(self, refuse_partition: int | None = None, report_error_for: bytes | None = None) -> None:
        self.refuse_partition = refuse_partition
        self.report_error_for = report_error_for
        self.pending: list = []
        self.flushed = 0

    def produce(self, topic, key=None, value=None, headers=None, on_delivery=None, partition=None):
        if partition is not None and partition == self.refuse_partition:
            raise KafkaException(KafkaError(KafkaError._UNKNOWN_PARTITION))
        self.pending.append((value, on_delivery))

    def poll(self, _timeout):
        return 0

    def flush(self, _timeout=None):
        self.flushed += 1
        for value, callback in self.pending:
            callback("refused" if value == self.report_error_for else None, None)
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

    class Silent(Producer):
        def flush(self, _timeout=None):
            self.pending = []
            return 0

    delivery = produce_and_confirm(Silent(), [ProduceRequest("t", None, b"a")], 1.0)
    assert delivery.failed == [0] and "unconfirmed" in delivery.first_error
