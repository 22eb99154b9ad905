"""The whole pipeline on the real brokers: a simulated Nova publishes through oslo.messaging to
RabbitMQ, `eventfed listen` bridges to Kafka, `eventfed stream` routes to the subscriptions."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bridge.simulator.simulate import CloudPublisher, plan
from streams import codecs
from tests.support.kafka import read_topic
from tests.support.processes import Proc, clean_env, free_port, wait_http
from tests.support.rabbit import wait_for_queue
from tests.support.stream import StreamRun

pytestmark = pytest.mark.integration

SUBSCRIPTIONS = """
subscriptions:
  - name: spec-kinds
    match: {events: [DELETE, PAUSE, POWER_OFF, REBUILD, SHUT_DOWN, SOFT_DELETE]}
    sink: {type: kafka, topic: "test.e2e.spec.{u}", format: json}
  - name: errors
    match: {events: ["*"], phases: [error]}
    sink: {type: kafka, topic: "test.e2e.errors.{u}", format: avro}
"""


def test_simulated_cloud_to_subscriptions_through_both_brokers(tmp_path, unique, kafka_bootstrap, rabbit_url):
    vim_id = "e2eowner_region-x"
    run = StreamRun(tmp_path, unique, kafka_bootstrap, SUBSCRIPTIONS)
    metrics_port = free_port()
    pool = f"eventfed-e2e-{unique}"
    listener = Proc(
        ["listen"],
        clean_env(
            EVENTFED_TRANSPORT_URL=rabbit_url,
            EVENTFED_VIM_ID=vim_id,
            EVENTFED_POOL=pool,
            EVENTFED_RAW_TOPIC=run.raw_topic,
            EVENTFED_DLQ_TOPIC=run.dlq_topic,
            EVENTFED_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
            EVENTFED_METRICS_PORT=str(metrics_port),
            EVENTFED_PARTITIONS="4",
            # The shared virtual host "/" holds the non-durable `nova` exchange of Nova's default.
            EVENTFED_DURABLE_QUEUES="false",
        ),
        tmp_path / "listener.log",
    )
    publisher = CloudPublisher(rabbit_url, durable=False)
    try:
        wait_http(f"http://127.0.0.1:{metrics_port}/readyz", 60, listener)
        wait_for_queue(pool)
        run.start()
        notes = plan(vms=40, seed=11, fmt="mixed")
        for note in notes:
            publisher.publish(note)
        spec_kinds = {"delete", "pause", "power_off", "rebuild", "shutdown", "soft_delete"}
        want_spec = Counter(
            (n.instance_id, n.event_type.split(".")[-2])
            for n in notes
            if n.event_type.split(".")[-2] in spec_kinds and n.event_type.endswith((".end", ".error"))
        )
        want_errors = Counter((n.instance_id, n.event_type) for n in notes if n.event_type.endswith(".error"))
        assert want_errors, "the simulation should include failed actions"
        spec = read_topic(kafka_bootstrap, f"test.e2e.spec.{unique}", expected=sum(want_spec.values()))
        got_spec = Counter()
        for msg in spec:
            body = json.loads(msg.value())
            assert body["vim_id"] == vim_id
            got_spec[(body["instance_id"], body["event_type"].split(".")[-2])] += 1
        assert got_spec == want_spec
        errors = read_topic(kafka_bootstrap, f"test.e2e.errors.{unique}", expected=sum(want_errors.values()))
        got_errors = Counter()
        for msg in errors:
            event = codecs.decode(msg.value(), "avro")
            assert event["fault"] is not None
            got_errors[(event["instance_id"], event["event_type"])] += 1
        assert got_errors == want_errors
        state = run.latest_state()
        assert len(state) == 40
        final = Counter(v["state"] for v in state.values() if v is not None)
        assert final == Counter({"stopped": 10, "paused": 10, "soft-delete": 10, "deleted": 10})
    finally:
        publisher.close()
        listener.terminate()
        run.stop_all()
