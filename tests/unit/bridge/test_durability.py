"""Queue durability: the one-line explanations of a refused declaration."""

from __future__ import annotations

from bridge.durability import describe_mismatch
from bridge.settings import ListenerSettings
from bridge.simulator.simulate import _explain


def test_listener_queues_follow_nova_s_default_unless_told_otherwise(monkeypatch):
    monkeypatch.setenv("EVENTFED_TRANSPORT_URL", "rabbit://guest:guest@127.0.0.1:5672/")
    monkeypatch.setenv("EVENTFED_VIM_ID", "owner_region")
    assert ListenerSettings().durable_queues is False  # oslo's and Nova's default
    monkeypatch.setenv("EVENTFED_DURABLE_QUEUES", "true")
    assert ListenerSettings().durable_queues is True


def test_an_exchange_mismatch_names_both_ways_out():
    line = describe_mismatch("exchange", "nova", "/", durable=True)
    assert line.startswith("RabbitMQ exchange 'nova' on virtual host '/' is non-durable")
    assert "declares it durable" in line
    assert "EVENTFED_DURABLE_QUEUES to false" in line
    assert "[oslo_messaging_rabbit] amqp_durable_queues true" in line
    assert "\n" not in line


def test_a_queue_mismatch_says_how_to_declare_it_again():
    line = describe_mismatch("queue", "eventfed", "cloud", durable=False)
    assert "queue 'eventfed' on virtual host 'cloud' is durable" in line
    assert "rabbitmqctl delete_queue -p cloud eventfed" in line


def test_oslo_s_refusal_is_explained_in_the_simulator_s_words():
    oslo = (
        "Unable to connect to AMQP server on 127.0.0.1:5672 after inf tries: Exchange.declare: (406) "
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'nova' in vhost 'r1': "
        "received 'false' but current is 'true'"
    )
    line = _explain(oslo)
    assert line.startswith("RabbitMQ exchange 'nova' on virtual host 'r1' is durable")
    assert "--durable-queues" in line
    assert _explain("Connection refused") == "Connection refused"
