"""The interactive commands against the real Kafka: `eventfed topics` and `eventfed consume`."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.kafka import delete_topics_containing
from tests.support.processes import EVENTFED, clean_env

pytestmark = pytest.mark.integration


def _topic_env(unique: str, bootstrap: str, **settings: str) -> dict[str, str]:
    env = clean_env(
        EVENTFED_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        EVENTFED_RAW_TOPIC=f"test.raw.{unique}",
        EVENTFED_EVENTS_TOPIC=f"test.events.{unique}",
        EVENTFED_STATE_TOPIC=f"test.state.{unique}",
        EVENTFED_DLQ_TOPIC=f"test.dlq.{unique}",
        EVENTFED_FLEET_PARTS_TOPIC=f"test.fleet.{unique}",
        EVENTFED_REPLICATION_FACTOR="1",
        **settings,
    )
    # As a person runs it: no log format chosen.
    env.pop("EVENTFED_LOG_FORMAT", None)
    return env


def _run(args: list[str], env: dict[str, str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([EVENTFED, *args], env=env, capture_output=True, input=stdin, timeout=90)


def test_topics_prints_kafka_s_partition_counts_and_fails_on_a_disagreement(
    kafka_bootstrap, kafka_topic_factory, unique
):
    kafka_topic_factory(f"test.raw.{unique}", partitions=2)
    env = _topic_env(unique, kafka_bootstrap, EVENTFED_PARTITIONS="3")
    try:
        result = _run(["topics"], env)
        out, err = result.stdout.decode(), result.stderr.decode()
        assert result.returncode == 1, err
        lines = {line.split("\t")[0]: line.split("\t")[1:] for line in out.splitlines()}
        assert lines[f"test.raw.{unique}"] == ["2 partitions", "exists, the settings say 3"]
        assert lines[f"test.events.{unique}"] == ["3 partitions", "created"]
        assert lines[f"test.dlq.{unique}"] == ["1 partitions", "created"]
        errors = [line for line in err.splitlines() if line.strip()]
        assert len(errors) == 1, err
        assert errors[0].startswith(f"eventfed topics: topic test.raw.{unique} has 2 partitions in Kafka")
        assert "EVENTFED_PARTITIONS=2" in errors[0]

        # Settings that agree: exit 0, nothing on stderr.
        env["EVENTFED_PARTITIONS"] = "2"
        for name in ("events", "state", "fleet"):
            delete_topics_containing(kafka_bootstrap, f"test.{name}.{unique}")
        agreed = _run(["topics"], env)
        assert agreed.returncode == 0, agreed.stderr.decode()
        assert agreed.stderr.decode().strip() == ""
        assert f"test.raw.{unique}\t2 partitions\texists" in agreed.stdout.decode()
    finally:
        delete_topics_containing(kafka_bootstrap, unique)


def test_consume_prints_each_record_of_a_topic_decoded(kafka_bootstrap, kafka_topic_factory, unique):
    import json
    from datetime import UTC, datetime

    from confluent_kafka import Producer

    from bridge.simulator.novasim import SimulatedCloud, raw_record
    from streams import codecs
    from streams.normalise import normalise

    topic = kafka_topic_factory(f"test.consume.{unique}", partitions=2)
    cloud = SimulatedCloud(seed=9)
    vm = cloud.new_vm(0)
    notes = [cloud.action(vm, "create", "end", "versioned"), cloud.action(vm, "pause", "end", "legacy")]
    raw_lines = [json.dumps(raw_record(n, "o_r", datetime(2026, 1, 1, tzinfo=UTC))).encode() for n in notes]
    event = normalise(json.loads(raw_lines[1]))
    assert event is not None
    ves_event = {
        "event": {"commonEventHeader": {"domain": "fault", "eventName": "Fault_x"}, "faultFields": {}}
    }
    values = [
        b"\n".join(raw_lines),  # a packed raw-topic record
        codecs.encode_avro(event),
        json.dumps(ves_event).encode(),
        b"\xde\xad\xbe\xef",
    ]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for value in values:
        producer.produce(topic, key=vm.uuid.encode(), value=value, headers=[("vim_id", b"o_r")])
    assert producer.flush(30) == 0

    env = _topic_env(unique, kafka_bootstrap)
    result = _run(["consume", topic, "--wait", "2"], env)
    assert result.returncode == 0, result.stderr.decode()
    printed = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(printed) == 4
    # One key: one partition, in the order produced.
    assert [p["offset"] for p in printed] == [0, 1, 2, 3]
    assert all(p["key"] == vm.uuid and p["headers"] == {"vim_id": "o_r"} for p in printed)
    raw, avro, ves, garbage = (p.get("value") for p in printed)
    assert [item["event"]["status"] for item in raw] == ["CREATE", "PAUSE"]
    assert avro["status"] == "PAUSE" and avro["instance_id"] == vm.uuid
    assert ves == ves_event
    assert garbage is None and "unrecognised format" in printed[3]["error"]
    assert printed[3]["value_hex"] == "de ad be ef"
    assert result.stderr.decode().strip() == ""

    last = _run(["consume", topic, "--last", "1", "--max", "1", "--wait", "2"], env)
    assert [json.loads(line)["offset"] for line in last.stdout.decode().splitlines()] == [3]

    missing = _run(["consume", f"test.nothing.{unique}", "--wait", "1"], env)
    assert missing.returncode == 1
    assert missing.stderr.decode().strip() == (
        f"eventfed consume: topic test.nothing.{unique} does not exist in Kafka at {kafka_bootstrap} "
        "(eventfed topics lists eventfed's)"
    )
