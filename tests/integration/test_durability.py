"""Queue durability: what a RabbitMQ restart keeps, and a clear refusal when Nova's side differs."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.simulator.simulate import CloudPublisher, plan
from tests.support.kafka import delete_topics_containing, read_notifications
from tests.support.processes import ROOT, Proc, clean_env, free_port, wait_http
from tests.support.rabbit import NovaNotifier, PrivateRabbitMQ

pytestmark = pytest.mark.integration

EVENTFED = str(Path(sys.executable).with_name("eventfed"))
VIM_ID = "durowner_region-1"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(
        [str(ROOT / "scripts/rabbitmq"), "ctl", *args], check=True, capture_output=True, timeout=120
    )


@pytest.fixture
def vhost(unique: str):
    """A virtual host of the shared RabbitMQ for one test."""
    name = f"durability-{unique}"
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    _rabbitmqctl("delete_vhost", name)


def test_a_durable_listener_refuses_nova_s_non_durable_exchange_with_one_line(vhost, kafka_bootstrap):
    url = f"rabbit://guest:guest@127.0.0.1:5672/{vhost}"
    notifier = NovaNotifier(url, "notifications")  # Nova's default: amqp_durable_queues = false
    notifier.send("compute.instance.update", {"instance_id": "vm-1"})
    notifier.close()
    result = subprocess.run(
        [EVENTFED, "listen"],
        env=clean_env(
            EVENTFED_TRANSPORT_URL=url,
            EVENTFED_VIM_ID=VIM_ID,
            EVENTFED_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
            EVENTFED_RAW_TOPIC=f"test.raw.{vhost}",
            EVENTFED_DLQ_TOPIC=f"test.dlq.{vhost}",
            EVENTFED_DURABLE_QUEUES="true",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    delete_topics_containing(kafka_bootstrap, vhost)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "exchange 'nova'" in errors[0] and "is non-durable" in errors[0]
    assert "EVENTFED_DURABLE_QUEUES" in errors[0] and "amqp_durable_queues" in errors[0]
    assert "Traceback" not in result.stderr


def test_the_simulator_refuses_an_exchange_of_the_other_durability_with_one_line(vhost):
    url = f"rabbit://guest:guest@127.0.0.1:5672/{vhost}"
    CloudPublisher(url, "durowner_one", durable=True).close()  # declares `nova` durable
    result = subprocess.run(
        [
            EVENTFED,
            "simulate",
            "--vim",
            f"durowner_one={url}",
            "--vms",
            "1",
            "--no-progress",
            "--no-durable-queues",
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "is durable, but this process declares it non-durable" in errors[0]
    assert "--durable-queues" in errors[0]


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "non-durable"])
def test_a_rabbitmq_restart_keeps_the_queued_notifications_only_with_durable_queues(
    tmp_path, unique, kafka_bootstrap, durable
):
    """Notifications queued while the listener is stopped, then RabbitMQ restarted: a durable queue
    still holds them and the listener delivers them; a non-durable one is gone with them."""
    rabbit = PrivateRabbitMQ(tmp_path / "rabbitmq.log")
    rabbit.start()
    listener: Proc | None = None
    raw_topic = f"test.raw.{unique}"
    pool = f"eventfed-{unique}"
    metrics_port = free_port()
    env = clean_env(
        EVENTFED_TRANSPORT_URL=rabbit.url("cloud"),
        EVENTFED_VIM_ID=VIM_ID,
        EVENTFED_POOL=pool,
        EVENTFED_RAW_TOPIC=raw_topic,
        EVENTFED_DLQ_TOPIC=f"test.dlq.{unique}",
        EVENTFED_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        EVENTFED_PARTITIONS="2",
        EVENTFED_METRICS_PORT=str(metrics_port),
        EVENTFED_DURABLE_QUEUES=str(durable).lower(),
    )
    notes = plan(vms=6, seed=3, fmt="mixed")
    before, after = notes[:40], notes[40:50]

    def publish(batch: list) -> None:
        publisher = CloudPublisher(rabbit.url("cloud"), "durowner_one", durable=durable)
        with publisher:
            for note in batch:
                publisher.publish(note)  # confirmed by RabbitMQ when it returns
        publisher.close()

    def start_listener() -> Proc:
        proc = Proc(["listen"], env, tmp_path / "listener.log")
        wait_http(f"http://127.0.0.1:{metrics_port}/readyz", 90, proc)
        return proc

    try:
        rabbit.add_vhost("cloud")
        publish(notes[:0])  # the exchange, declared as this Nova does
        listener = start_listener()  # declares and binds its queue
        assert listener.terminate() == 0
        publish(before)
        assert rabbit.queue_depths("cloud")[pool] == len(before)
        rabbit.stop()
        rabbit.start()
        depths = rabbit.queue_depths("cloud")
        if durable:
            assert depths[pool] == len(before)
        else:
            assert pool not in depths
        listener = start_listener()
        publish(after)
        expected = before + after if durable else after
        records = read_notifications(kafka_bootstrap, raw_topic, len(expected), timeout=90)
        got = sorted((json.loads(r.value())["event_type"], r.key().decode()) for r in records)
        assert got == sorted((n.event_type, n.instance_id) for n in expected)
    finally:
        if listener is not None and listener.alive():
            with contextlib.suppress(Exception):
                listener.terminate()
        with contextlib.suppress(Exception):
            rabbit.stop()
        rabbit.remove_data()
        delete_topics_containing(kafka_bootstrap, unique)
