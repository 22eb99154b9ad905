"""RabbitMQ over TLS: a node of the test's own with an AMQPS listener (scripts/rabbitmq with
RABBITMQ_TLS_PORT). The simulator's publisher sends over TLS, `eventfed listen` receives over TLS
(with a client certificate); a CA that did not sign the broker's certificate is one clear line and
readiness false, with the process alive and no traceback."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest

from bridge.settings import SimulateSettings
from bridge.simulator.simulate import CloudPublisher, RabbitUnreachable, plan
from tests.support.kafka import delete_topics_containing, read_notifications
from tests.support.processes import Proc, clean_env, free_port, wait_http
from tests.support.rabbit import PrivateRabbit
from tests.support.tls import Pki, make_pki

pytestmark = pytest.mark.integration

VIM_ID = "tlsowner_region-amqps"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("rabbit-pki"))


@pytest.fixture(scope="module")
def tls_rabbit(pki) -> Iterator[PrivateRabbit]:
    node = PrivateRabbit(tls_dir=pki.dir).start()
    try:
        yield node
    finally:
        node.stop()


def _listener_env(
    tls_rabbit: PrivateRabbit, unique: str, bootstrap: str, metrics_port: int, **tls: str
) -> dict:
    return clean_env(
        EVENTFED_TRANSPORT_URL=tls_rabbit.url(tls=True),
        EVENTFED_VIM_ID=VIM_ID,
        EVENTFED_POOL=f"eventfed-{unique}",
        EVENTFED_RAW_TOPIC=f"test.raw.{unique}",
        EVENTFED_DLQ_TOPIC=f"test.dlq.{unique}",
        EVENTFED_PARTITIONS="2",
        EVENTFED_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        EVENTFED_METRICS_PORT=str(metrics_port),
        EVENTFED_BATCH_TIMEOUT="0.1",
        EVENTFED_RABBIT_SSL="true",
        **tls,
    )


def _readiness(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_listen_receives_over_tls_what_the_simulator_published_over_tls(
    tls_rabbit, pki, tmp_path, unique, kafka_bootstrap
):
    metrics_port = free_port()
    listener = Proc(
        ["listen"],
        _listener_env(
            tls_rabbit,
            unique,
            kafka_bootstrap,
            metrics_port,
            EVENTFED_RABBIT_SSL_CA_FILE=str(pki.ca),
            EVENTFED_RABBIT_SSL_CERT_FILE=str(pki.client_cert),
            EVENTFED_RABBIT_SSL_KEY_FILE=str(pki.client_key),
        ),
        tmp_path / "listen.log",
    )
    publisher = CloudPublisher(
        tls_rabbit.url(tls=True), VIM_ID, rabbit=SimulateSettings(rabbit_ssl=True, rabbit_ssl_ca_file=pki.ca)
    )
    try:
        wait_http(f"http://127.0.0.1:{metrics_port}/readyz", 90, listener)
        # The listener's pool queue exists once it consumes; only then is a notification kept.
        deadline = time.monotonic() + 60
        while (
            f"eventfed-{unique}" not in tls_rabbit.ctl("list_queues", "-q", "--no-table-headers", "name")
            and time.monotonic() < deadline
        ):
            time.sleep(0.5)
        notes = plan(vms=3, seed=9, fmt="mixed")
        with publisher:
            for note in notes:
                publisher.publish(note)
        raw = read_notifications(kafka_bootstrap, f"test.raw.{unique}", len(notes), timeout=90)
        assert Counter(json.loads(r.value())["event_type"] for r in raw) == Counter(
            n.event_type for n in notes
        )
        # The TLS connections are the node's, not a plaintext fallback: the plain port is unused.
        connections = tls_rabbit.ctl("list_connections", "-q", "--no-table-headers", "ssl", "port")
        assert connections.split() and all(
            line.split()[0] == "true" for line in connections.strip().splitlines()
        )
        assert listener.alive()
    finally:
        publisher.close()
        listener.terminate()
        delete_topics_containing(kafka_bootstrap, unique)


def test_a_wrong_ca_is_one_clear_error_and_not_ready_without_a_crash(
    tls_rabbit, pki, tmp_path, unique, kafka_bootstrap
):
    metrics_port = free_port()
    listener = Proc(
        ["listen"],
        _listener_env(
            tls_rabbit, unique, kafka_bootstrap, metrics_port, EVENTFED_RABBIT_SSL_CA_FILE=str(pki.other_ca)
        ),
        tmp_path / "listen.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{metrics_port}/healthz", 60, listener)
        deadline = time.monotonic() + 60
        status, body = _readiness(metrics_port)
        while "not trusted" not in body and time.monotonic() < deadline:
            time.sleep(1)
            status, body = _readiness(metrics_port)
        assert status == 503, body
        assert "the broker's certificate is not trusted" in body and "EVENTFED_RABBIT_SSL_CA_FILE" in body, (
            body
        )
        time.sleep(10)  # oslo's driver retries meanwhile
        assert listener.alive(), "a wrong CA must not crash the listener into a restart loop"
        log = listener.log()
        assert "Traceback" not in log, log[-3000:]
        errors = [line for line in log.splitlines() if "cannot connect to RabbitMQ" in line]
        assert len(errors) == 1, log[-3000:]
        assert "not trusted" in errors[0] and "EVENTFED_RABBIT_SSL_CA_FILE" in errors[0]
    finally:
        listener.terminate()
        delete_topics_containing(kafka_bootstrap, unique)


def test_the_simulator_says_in_one_line_that_the_broker_is_not_trusted(tls_rabbit, pki):
    with pytest.raises(RabbitUnreachable, match="certificate verify failed"):
        CloudPublisher(
            tls_rabbit.url(tls=True),
            "demo_one",
            rabbit=SimulateSettings(rabbit_ssl=True, rabbit_ssl_ca_file=pki.other_ca),
        )
