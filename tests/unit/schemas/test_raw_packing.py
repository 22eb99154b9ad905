"""Packing raw records per partition, and reading them back, as the listener and stream do."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.kafka_config import KeyPartitioner
from schemas.raw import HEADER_COUNT, RawRecord, build_raw_record, documents, is_packed, pack, unpack
from tests.support.fake_message import FakeMessage

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def raw_records(vms: list[str], per_vm: int) -> list[RawRecord]:
    records = []
    for seq in range(per_vm):
        for vm in vms:
            message = {
                "ctxt": {"auth_token": "secret"},
                "publisher_id": "compute.host-1",
                "event_type": "compute.instance.update",
                "payload": {"instance_id": vm, "seq": seq, "note": "a\nb"},
                "metadata": {"message_id": str(uuid.uuid4()), "timestamp": "2026-11-29 12:00:00.000001"},
            }
            record = build_raw_record(message, "info", "own_reg", NOW, 1_000_000)
            assert isinstance(record, RawRecord)
            records.append(record)
    return records


def test_records_of_one_partition_share_a_kafka_record_in_order_and_unpack_as_their_single_form():
    vms = [str(uuid.UUID(int=i)) for i in range(12)]
    records = raw_records(vms, 5)
    partitioner = KeyPartitioner(4)
    packed = pack(records, partitioner, 500, 1_000_000)
    assert len(packed) == len({partitioner(r.key) for r in records}) < len(records)
    seen: list[int] = []
    for kafka_record in packed:
        assert is_packed(kafka_record.headers) or len(kafka_record.members) == 1
        assert {partitioner(records[m].key) for m in kafka_record.members} == {kafka_record.partition}
        assert list(kafka_record.members) == sorted(kafka_record.members)
        singles = unpack(kafka_record.key, kafka_record.value, kafka_record.headers)
        assert singles == [records[m] for m in kafka_record.members]
        seen.extend(kafka_record.members)
    assert sorted(seen) == list(range(len(records)))


def test_a_line_break_inside_a_payload_stays_inside_its_document():
    records = raw_records(["vm-a"], 3)
    (kafka_record,) = pack(records, lambda _key: 0, 500, 1_000_000)
    lines = documents(kafka_record.value, kafka_record.headers)
    assert [json.loads(line)["payload"]["note"] for line in lines] == ["a\nb"] * 3
    assert kafka_record.key == b"vm-a"


def test_limits_split_a_partition_into_several_records_and_one_vm_keeps_its_key():
    records = raw_records(["vm-a"], 10)
    assert [len(p.members) for p in pack(records, lambda _key: 0, 4, 1_000_000)] == [4, 4, 2]
    one_size = len(records[0].value) + 1
    by_bytes = pack(records, lambda _key: 0, 500, one_size * 3)
    assert [len(p.members) for p in by_bytes] == [3, 3, 3, 1]
    assert all(p.key == b"vm-a" for p in by_bytes)


def test_without_a_partition_count_each_notification_is_its_own_keyed_record():
    records = raw_records(["vm-a", "vm-b"], 2)
    packed = pack(records, None, 500, 1_000_000)
    assert [(p.partition, p.key, p.value, p.headers) for p in packed] == [
        (None, r.key, r.value, r.headers) for r in records
    ]
    assert not any(is_packed(p.headers) for p in packed)


def test_mixed_vms_have_no_key_and_say_how_many_they_carry():
    records = raw_records(["vm-a", "vm-b", "vm-c"], 2)
    (kafka_record,) = pack(records, lambda _key: 1, 500, 1_000_000)
    headers = dict(kafka_record.headers)
    assert kafka_record.key is None and headers[HEADER_COUNT] == b"6" and headers["vim_id"] == b"own_reg"
    assert is_packed({HEADER_COUNT: b"6"}) and not is_packed(None) and not is_packed([("vim_id", b"x")])


def test_the_key_partitioner_matches_kafkas_murmur2_for_known_keys():
    # Partitions the Java client (and librdkafka's murmur2_random) gives these keys with 8 partitions.
    partitioner = KeyPartitioner(8)
    from aiokafka.partitioner import murmur2

    for key in (b"a", b"instance-1", str(uuid.UUID(int=7)).encode()):
        assert partitioner(key) == (murmur2(key) & 0x7FFFFFFF) % 8
        assert partitioner(key) == KeyPartitioner(8)(key)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["v1", "v2", "v3", "v4"]), st.integers(0, 10)), min_size=1, max_size=60
    ),
    st.integers(1, 7),
    st.integers(1, 5),
)
def test_per_key_order_survives_packing(events, partitions, pack_max):
    records = [
        RawRecord(vm.encode(), json.dumps({"seq": i}).encode(), []) for i, (vm, _) in enumerate(events)
    ]
    partitioner = KeyPartitioner(partitions)
    by_partition: dict[int, list[int]] = {}
    for kafka_record in pack(records, partitioner, pack_max, 1_000_000):
        # One record per notification (pack_max 1) is left to the producer's partitioner.
        partition = kafka_record.partition
        if partition is None:
            partition = partitioner(records[kafka_record.members[0]].key)
        by_partition.setdefault(partition, []).extend(kafka_record.members)
    for members in by_partition.values():
        assert members == sorted(members)
    assert sorted(m for ms in by_partition.values() for m in ms) == list(range(len(records)))


class MetadataProducer:
    """Knows the raw topic's partitions; refuses partition `refused` when asked to."""

    def __init__(self, partitions: int, refused: int | None = None) -> None:
        topic = type("Topic", (), {"partitions": dict.fromkeys(range(partitions)), "error": None})()
        self._metadata = type("Metadata", (), {"topics": {"raw": topic}})()
        self.refused = refused
        self.records: list[tuple[str, int | None, bytes]] = []
        self._pending: list = []

    def list_topics(self, _topic, timeout=None):
        return self._metadata

    def produce(self, topic, key=None, value=None, headers=None, on_delivery=None, partition=-1):
        self._pending.append((topic, key, partition, value, on_delivery))

    def poll(self, _timeout):
        return 0

    def flush(self, _timeout=None):
        for topic, key, partition, value, callback in self._pending:
            if partition is not None and partition == self.refused:
                callback("refused", FakeMessage(topic, key, value))
            else:
                self.records.append((topic, partition, value))
                callback(None, FakeMessage(topic, key, value))
        self._pending = []
        return 0


def test_the_listener_writer_packs_per_partition_and_maps_a_refusal_back_to_its_notifications():
    from bridge.raw_writer import KafkaBatchWriter

    vms = [str(uuid.UUID(int=i)) for i in range(16)]
    records = raw_records(vms, 3)
    partitioner = KeyPartitioner(4)
    refused = partitioner(records[0].key)
    producer = MetadataProducer(4, refused=refused)
    writer = KafkaBatchWriter(producer, "raw", "dlq", 1.0, pack_max=500, max_bytes=1_000_000)
    result = writer.write(records)
    assert len(producer.records) == 3  # the four partitions but the refused one, one record each
    expected_failed = [r for r in records if partitioner(r.key) == refused]
    assert result.failed == expected_failed and result.written == len(records) - len(expected_failed)
    for _topic, partition, value in producer.records:
        assert value.count(b"\n") + 1 == sum(1 for r in records if partitioner(r.key) == partition)
