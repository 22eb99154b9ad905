"""`eventfed stream` with and without a real Schema Registry (Apicurio Registry's Confluent-
compatible API, scripts/schema-registry), against the real Kafka.

With a registry: a subject per Avro topic, `<topic>-value`, for the events topic and each `avro`
subscription (also one added while the worker runs), none for JSON feeds; every Avro record in the
Confluent wire format with its topic's schema id, readable by confluent-kafka's AvroDeserializer and
by `eventfed decode`; the content-type header says so. Without one: single-object encoding, and a
header that says that. A registry that cannot be reached keeps the worker not ready, then stops it
with one clear line; a subject it refuses keeps a new subscription out of force (and the worker
not ready) until it takes it.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from bridge.simulator.novasim import SimulatedCloud, raw_record
from streams import codecs
from tests.support.kafka import headers_of
from tests.support.processes import EVENTFED, clean_env, free_port
from tests.support.registry import running_registry
from tests.support.stream import StreamRun

pytestmark = pytest.mark.integration

VIM = "owner_region-sr"
CONFLUENT_TYPE = b"application/vnd.apache.avro+binary; encoding=confluent"
SINGLE_OBJECT_TYPE = b"application/vnd.apache.avro+binary; encoding=single-object"

SUBSCRIPTIONS = """
subscriptions:
  - name: power-avro
    match: {events: ["POWER_*"]}
    sink: {type: kafka, topic: "test.sr.avro.{u}", format: avro}
  - name: power-json
    match: {events: ["POWER_*"]}
    sink: {type: kafka, topic: "test.sr.json.{u}", format: json}
"""


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    with running_registry() as url:
        yield url


@pytest.fixture
def stream_run(tmp_path, unique, kafka_bootstrap):
    run = StreamRun(tmp_path, unique, kafka_bootstrap, SUBSCRIPTIONS, partitions=2)
    yield run
    run.stop_all()


def power_cycles(cloud: SimulatedCloud, vms: int) -> list[tuple[str, dict]]:
    """Per VM: created, powered off, powered on (each an `end`): two events per VM reach the feeds."""
    records = []
    for i in range(vms):
        vm = cloud.new_vm(i)
        for action in ("create", "power_off", "power_on"):
            note = cloud.action(vm, action, "end", "versioned" if i % 2 else "legacy")
            records.append((vm.uuid, raw_record(note, VIM, cloud.tick())))
    return records


def test_each_avro_topic_has_its_subject_and_its_records_carry_its_schema_id(
    stream_run, registry_url, tmp_path
):
    u = stream_run.unique
    events_topic, avro_topic, json_topic = stream_run.events_topic, f"test.sr.avro.{u}", f"test.sr.json.{u}"
    stream_run.start(EVENTFED_SCHEMA_REGISTRY_URL=registry_url)

    client = SchemaRegistryClient({"url": registry_url})
    subjects = set(client.get_subjects())
    assert {f"{events_topic}-value", f"{avro_topic}-value"} <= subjects
    assert f"{json_topic}-value" not in subjects
    ids = {}
    for topic in (events_topic, avro_topic):
        registered = client.get_latest_version(f"{topic}-value")
        assert json.loads(registered.schema.schema_str) == codecs.SCHEMA
        ids[topic] = registered.schema_id

    records = power_cycles(SimulatedCloud(seed=21), 4)
    stream_run.send(records)
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    for topic, expected in ((events_topic, len(records)), (avro_topic, 8)):
        messages = stream_run.read(topic, expected=expected)
        assert len(messages) == expected
        for msg in messages:
            value = msg.value()
            assert value[:1] == b"\x00"
            assert int.from_bytes(value[1:5], "big") == ids[topic]
            assert headers_of(msg)["content-type"] == CONFLUENT_TYPE
            event = deserializer(value, SerializationContext(topic, MessageField.VALUE))
            assert event["instance_id"] == msg.key().decode()
            assert event["vim_id"] == VIM
        statuses = sorted(
            deserializer(m.value(), SerializationContext(topic, MessageField.VALUE))["status"]
            for m in messages
        )
        if topic == avro_topic:
            assert statuses == ["POWER_OFF"] * 4 + ["POWER_ON"] * 4

    for msg in stream_run.read(json_topic, expected=8):
        assert headers_of(msg)["content-type"] == b"application/json"
        assert json.loads(msg.value())["vim_id"] == VIM

    # `eventfed decode` reads the Confluent wire format through the registry.
    sample = stream_run.read(avro_topic, expected=8)[0]
    path = tmp_path / "record.bin"
    path.write_bytes(sample.value())
    decoded = subprocess.run(
        [EVENTFED, "decode", str(path), "--schema-registry-url", registry_url],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert decoded.returncode == 0, decoded.stderr
    assert json.loads(decoded.stdout)["instance_id"] == sample.key().decode()


def test_a_new_avro_subscription_gets_its_subject_before_its_first_record(stream_run, registry_url):
    u = stream_run.unique
    worker = stream_run.start(EVENTFED_SCHEMA_REGISTRY_URL=registry_url)
    new_topic = f"test.sr.added.{u}"
    stream_run.subscriptions_file.write_text(
        SUBSCRIPTIONS.replace("{u}", u) + f"  - name: added-avro\n    match: {{events: [POWER_OFF]}}\n"
        f"    sink: {{type: kafka, topic: {new_topic}, format: avro}}\n"
    )
    deadline = time.monotonic() + 60
    while "subscriptions reloaded: power-avro, power-json, added-avro" not in worker.log():
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.5)
    client = SchemaRegistryClient({"url": registry_url})
    schema_id = client.get_latest_version(f"{new_topic}-value").schema_id

    stream_run.send(power_cycles(SimulatedCloud(seed=22), 2))
    messages = stream_run.read(new_topic, expected=2)
    assert len(messages) == 2
    for msg in messages:
        assert msg.value()[:5] == b"\x00" + schema_id.to_bytes(4, "big")
        assert headers_of(msg)["content-type"] == CONFLUENT_TYPE
        assert codecs.ConfluentCodec(registry_url).decode(msg.value())["status"] == "POWER_OFF"


def test_without_a_registry_avro_is_single_object_and_the_header_says_so(stream_run):
    u = stream_run.unique
    stream_run.start()
    records = power_cycles(SimulatedCloud(seed=23), 2)
    stream_run.send(records)
    for topic, expected in ((stream_run.events_topic, len(records)), (f"test.sr.avro.{u}", 4)):
        messages = stream_run.read(topic, expected=expected)
        assert len(messages) == expected
        for msg in messages:
            assert msg.value()[:10] == codecs.SINGLE_OBJECT_MAGIC + codecs.FINGERPRINT
            assert headers_of(msg)["content-type"] == SINGLE_OBJECT_TYPE
            assert codecs.decode(msg.value())["instance_id"] == msg.key().decode()


def test_an_unreachable_registry_keeps_the_worker_unready_then_stops_it(stream_run):
    dead_registry = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"
    worker = stream_run.start(
        wait_ready=False, EVENTFED_SCHEMA_REGISTRY_URL=dead_registry, EVENTFED_SCHEMA_REGISTRY_TIMEOUT="20"
    )
    ready_url = f"http://127.0.0.1:{worker.metrics_port}/readyz"
    seen_unready = ""
    deadline = time.monotonic() + 60
    while worker.alive() and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as response:
                pytest.fail(f"ready with an unreachable registry: {response.read()!r}")
        except urllib.error.HTTPError as error:
            body = error.read().decode()
            if "register" in body:
                seen_unready = body
        except OSError:
            pass
        time.sleep(0.3)
    assert worker.popen.wait(60) == 1
    assert "registering schemas" in seen_unready or "cannot register subject" in seen_unready
    log = worker.log()
    assert f"cannot start: schema registry {dead_registry}: cannot register subject" in log
    assert f"{stream_run.events_topic}-value" in log
    # Nothing was written to the events topic in any framing.
    assert stream_run.read(stream_run.events_topic, idle=1) == []


def test_a_subject_the_registry_refuses_keeps_the_new_subscriptions_out_until_it_takes_it(
    stream_run, registry_url
):
    u = stream_run.unique
    new_topic = f"test.sr.refused.{u}"
    subject = f"{new_topic}-value"
    client = SchemaRegistryClient({"url": registry_url})
    # Someone else's schema under the subject, and a compatibility rule ours cannot meet.
    client.register_schema(subject, Schema('"string"', "AVRO"))
    client.set_compatibility(subject, "BACKWARD")

    worker = stream_run.start(EVENTFED_SCHEMA_REGISTRY_URL=registry_url)
    ready_url = f"http://127.0.0.1:{worker.metrics_port}/readyz"
    stream_run.subscriptions_file.write_text(
        SUBSCRIPTIONS.replace("{u}", u) + "  - name: refused-avro\n    match: {events: [POWER_OFF]}\n"
        f"    sink: {{type: kafka, topic: {new_topic}, format: avro}}\n"
    )
    reason = ""
    deadline = time.monotonic() + 60
    while subject not in reason:
        assert time.monotonic() < deadline, worker.log()[-3000:]
        try:
            with urllib.request.urlopen(ready_url, timeout=2):
                pass
        except urllib.error.HTTPError as error:
            assert error.code == 503
            reason = error.read().decode()
        time.sleep(0.3)
    assert "new subscriptions not in force" in reason

    # Meanwhile the rules in force keep working, and nothing reaches the refused topic.
    cloud = SimulatedCloud(seed=24)
    stream_run.send(power_cycles(cloud, 1))
    assert len(stream_run.read(f"test.sr.avro.{u}", expected=2)) == 2
    assert stream_run.read(new_topic, idle=1) == []
    assert "refused-avro" not in worker.log()

    # Once the registry takes the subject, the new subscription goes in force, the worker is ready.
    client.set_compatibility(subject, "NONE")
    deadline = time.monotonic() + 90
    while "subscriptions reloaded: power-avro, power-json, refused-avro" not in worker.log():
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.5)
    with urllib.request.urlopen(ready_url, timeout=2) as response:
        assert response.status == 200
    schema_id = client.get_latest_version(subject).schema_id
    stream_run.send(power_cycles(cloud, 1))
    messages = stream_run.read(new_topic, expected=1)
    assert [m.value()[:5] for m in messages] == [b"\x00" + schema_id.to_bytes(4, "big")]
