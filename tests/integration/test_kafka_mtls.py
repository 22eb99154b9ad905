"""Kafka with mutual TLS, as ONAP's Strimzi `tls` listener: a broker of its own whose SSL listener
requires a client certificate (scripts/kafka with KAFKA_SSL_PORT). `listen`, `stream` and `api`
carry notifications end to end over it; a client without a certificate is refused with one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bridge.simulator.simulate import plan
from streams import codecs
from tests.support.kafka import read_notifications, read_topic
from tests.support.processes import EVENTFED, ROOT, Proc, clean_env, free_port, wait_http
from tests.support.rabbit import NovaNotifier, wait_for_queue
from tests.support.tls import Pki, make_pki
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

V1 = "/api/eventfed/v1"
VIM_ID = "tlsowner_region-mtls"


@dataclass(frozen=True)
class MtlsKafka:
    plaintext: str  # for the test's own readers only
    ssl: str
    pki: Pki

    def client_env(self, **settings: str) -> dict[str, str]:
        """An eventfed process's settings for the SSL listener with a client certificate (its key
        encrypted, so that the key password is exercised by librdkafka and by aiokafka)."""
        tls = {
            "EVENTFED_KAFKA_BOOTSTRAP_SERVERS": self.ssl,
            "EVENTFED_KAFKA_SECURITY_PROTOCOL": "SSL",
            "EVENTFED_KAFKA_SSL_CA_LOCATION": str(self.pki.ca),
            "EVENTFED_KAFKA_SSL_CERTIFICATE_LOCATION": str(self.pki.client_cert),
            "EVENTFED_KAFKA_SSL_KEY_LOCATION": str(self.pki.client_key_encrypted),
            "EVENTFED_KAFKA_SSL_KEY_PASSWORD": self.pki.key_password,
        }
        return clean_env(**{**tls, **settings})


@pytest.fixture(scope="module")
def mtls_kafka(tmp_path_factory) -> Iterator[MtlsKafka]:
    pki = make_pki(tmp_path_factory.mktemp("kafka-pki"))
    port, ssl_port = free_port(), free_port()
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_SSL_PORT": str(ssl_port),
        "KAFKA_TLS_DIR": str(pki.dir),
    }
    kafka = str(ROOT / "scripts/kafka")
    subprocess.run([kafka, "start"], env=env, check=True)
    try:
        yield MtlsKafka(f"127.0.0.1:{port}", f"127.0.0.1:{ssl_port}", pki)
    finally:
        subprocess.run([kafka, "stop"], env=env, check=False)
        shutil.rmtree(ROOT / ".run" / f"kafka-{port}", ignore_errors=True)


def _get_json(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_listen_stream_and_api_carry_notifications_over_mutual_tls(mtls_kafka, tmp_path, unique, rabbit_url):
    topics = {"legacy": f"notifications_{unique}", "versioned": f"versioned_notifications_{unique}"}
    names = {
        "EVENTFED_RAW_TOPIC": f"test.raw.{unique}",
        "EVENTFED_EVENTS_TOPIC": f"test.events.{unique}",
        "EVENTFED_STATE_TOPIC": f"test.state.{unique}",
        "EVENTFED_DLQ_TOPIC": f"test.dlq.{unique}",
        "EVENTFED_PARTITIONS": "2",
    }
    listen_port, stream_port, api_port = free_port(), free_port(), free_port()
    pool = f"eventfed-mtls-{unique}"
    procs = [
        Proc(
            ["listen"],
            mtls_kafka.client_env(
                EVENTFED_TRANSPORT_URL=rabbit_url,
                EVENTFED_VIM_ID=VIM_ID,
                EVENTFED_TOPICS=",".join(topics.values()),
                EVENTFED_POOL=pool,
                EVENTFED_METRICS_PORT=str(listen_port),
                EVENTFED_BATCH_TIMEOUT="0.1",
                **names,
            ),
            tmp_path / "listen.log",
        ),
        Proc(
            ["stream"],
            mtls_kafka.client_env(
                EVENTFED_APP_ID=f"test-mtls-{unique}",
                EVENTFED_METRICS_PORT=str(stream_port),
                EVENTFED_WEB_PORT=str(free_port()),
                EVENTFED_DATA_DIR=str(tmp_path / "stream-data"),
                **names,
            ),
            tmp_path / "stream.log",
        ),
    ]
    notifiers = {fmt: NovaNotifier(rabbit_url, topic) for fmt, topic in topics.items()}
    try:
        wait_http(f"http://127.0.0.1:{listen_port}/readyz", 90, procs[0])
        wait_for_queue(pool)
        wait_http(f"http://127.0.0.1:{stream_port}/readyz", 180, procs[1])
        procs.append(
            Proc(
                ["api"],
                mtls_kafka.client_env(
                    EVENTFED_API_HOST="127.0.0.1", EVENTFED_API_PORT=str(api_port), **names
                ),
                tmp_path / "api.log",
            )
        )
        wait_http(f"http://127.0.0.1:{api_port}/readyz", 90, procs[2])
        notes = plan(vms=4, seed=5, fmt="mixed")
        for note in notes:
            fmt = "legacy" if note.event_type.startswith("compute.") else "versioned"
            notifiers[fmt].send(note.event_type, note.payload, note.priority, note.publisher_id)

        # Every hop, read back over the broker's plaintext listener by the test itself.
        raw = read_notifications(mtls_kafka.plaintext, names["EVENTFED_RAW_TOPIC"], len(notes), timeout=90)
        assert len(raw) == len(notes)
        events = read_topic(mtls_kafka.plaintext, names["EVENTFED_EVENTS_TOPIC"], expected=1, timeout=90)
        assert events
        assert {codecs.decode(e.value())["instance_id"] for e in events} <= {n.instance_id for n in notes}

        def vim_states() -> dict | None:
            vims = {v["vim_id"]: v for v in _get_json(f"http://127.0.0.1:{api_port}{V1}/vims")["vims"]}
            vim = vims.get(VIM_ID)
            return vim if vim and vim["vm_count"] == 4 and sum(vim["states"].values()) == 4 else None

        vim = wait_until(vim_states, 90, "the API shows the 4 VMs' final states")
        assert Counter(vim["states"]) == Counter({"stopped": 1, "paused": 1, "soft-delete": 1, "deleted": 1})
        for proc in procs:
            assert proc.alive()
    finally:
        for notifier in notifiers.values():
            notifier.close()
        for proc in procs:
            proc.terminate()


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The timeout is the "no hang" check: a refused handshake must end the command, not stall it.
    return subprocess.run([EVENTFED, *args], env=env, capture_output=True, text=True, timeout=90)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


def test_a_client_without_a_certificate_is_refused_with_one_clear_line(
    mtls_kafka, tmp_path, unique, rabbit_url
):
    env = mtls_kafka.client_env(
        EVENTFED_RAW_TOPIC=f"test.raw.{unique}", EVENTFED_DLQ_TOPIC=f"test.dlq.{unique}"
    )
    for name in ("EVENTFED_KAFKA_SSL_CERTIFICATE_LOCATION", "EVENTFED_KAFKA_SSL_KEY_LOCATION"):
        del env[name]
    del env["EVENTFED_KAFKA_SSL_KEY_PASSWORD"]
    for command in (["topics"], ["stream"]):
        result = _run(command, {**env, "EVENTFED_DATA_DIR": str(tmp_path / "data")})
        assert result.returncode == 1, result.stderr
        errors = _error_lines(result.stderr)
        assert len(errors) == 1, result.stderr
        assert "the broker refused this client's TLS certificate" in errors[0]
        assert "set EVENTFED_KAFKA_SSL_CERTIFICATE_LOCATION" in errors[0]
        assert "Traceback" not in result.stderr

    # The listener keeps running (batches would wait in RabbitMQ), says it once, and is not ready.
    metrics_port = free_port()
    listener = Proc(
        ["listen"],
        {
            **env,
            "EVENTFED_TRANSPORT_URL": rabbit_url,
            "EVENTFED_VIM_ID": VIM_ID,
            "EVENTFED_TOPICS": f"notifications_{unique}",
            "EVENTFED_POOL": f"eventfed-nocert-{unique}",
            "EVENTFED_METRICS_PORT": str(metrics_port),
        },
        tmp_path / "listen-nocert.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{metrics_port}/healthz", 60, listener)

        def refused_reason() -> str | None:
            try:
                _get_json(f"http://127.0.0.1:{metrics_port}/readyz")
            except urllib.error.HTTPError as error:
                reason = json.loads(error.read())["reason"]
                return reason if "refused this client's TLS certificate" in reason else None
            raise AssertionError("ready without a client certificate")

        wait_until(refused_reason, 60, "/readyz says the broker refused the certificate")
        assert listener.alive()
        log = listener.log()
        assert (
            len([line for line in _error_lines(log) if "refused this client's TLS certificate" in line]) == 1
        ), log
        assert "Traceback" not in log
    finally:
        listener.terminate()


def test_a_broker_certificate_from_another_ca_is_a_clear_error(mtls_kafka, unique):
    env = mtls_kafka.client_env(
        EVENTFED_KAFKA_SSL_CA_LOCATION=str(mtls_kafka.pki.other_ca),
        EVENTFED_RAW_TOPIC=f"test.raw.{unique}",
        EVENTFED_DLQ_TOPIC=f"test.dlq.{unique}",
    )
    result = _run(["topics"], env)
    assert result.returncode == 1
    errors = _error_lines(result.stderr)
    assert len(errors) == 1 and "the broker's TLS certificate is not trusted" in errors[0], result.stderr


def test_unusable_tls_files_are_listed_together_before_any_connection(mtls_kafka, tmp_path):
    env = mtls_kafka.client_env(
        EVENTFED_KAFKA_SSL_CA_LOCATION=str(tmp_path / "missing-ca.crt"),
        # The server's certificate with the client's key: a pair that does not belong together.
        EVENTFED_KAFKA_SSL_CERTIFICATE_LOCATION=str(mtls_kafka.pki.server_cert),
    )
    result = _run(["topics"], env)
    assert result.returncode == 2
    (error,) = _error_lines(result.stderr)
    assert "EVENTFED_KAFKA_SSL_CA_LOCATION: no such file" in error
    assert "is not the key of the certificate" in error
