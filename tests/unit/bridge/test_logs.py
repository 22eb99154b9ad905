"""Log lines: RFC 3339 UTC times, one JSON record per line on stderr, librdkafka through logging,
no secret in any of it."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from bridge import kafka_error_internals
from bridge.kafka_config import admin_config, consumer_config, producer_config
from bridge.logs import LIBRDKAFKA_LOGGER, RepeatSuppressor, configure
from bridge.settings import ApiSettings, ListenerSettings, SettingsError, StreamSettings, load
from tests.support.processes import free_port
from tests.support.tls import KEY_PASSWORD, make_pki

RFC3339_UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(autouse=True)
def clean_env(no_eventfed_env):
    yield
    logging.getLogger().handlers.clear()


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_records_are_one_line_each_on_stderr_with_rfc3339_utc_times(capsys):
    configure("INFO", "json", "listen")
    log = logging.getLogger("eventfed.test")
    log.warning("first\nwith a newline")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("second")
    captured = capsys.readouterr()
    assert captured.out == ""
    records = _json_lines(captured.err)
    assert [r["message"] for r in records] == ["first\nwith a newline", "second"]
    assert len(captured.err.splitlines()) == 2
    for record in records:
        assert RFC3339_UTC_MS.match(record["time"]), record["time"]
        assert record["component"] == "listen"
    assert "ValueError: boom" in records[1]["exc_info"]


def test_text_format_uses_the_same_times(capsys):
    configure("INFO", "text", "api")
    logging.getLogger("eventfed.test").info("hello")
    line = capsys.readouterr().err.strip()
    stamp, rest = line.split(" ", 1)
    assert RFC3339_UTC_MS.match(stamp)
    assert rest == "INFO eventfed.test: hello"


def test_repeat_suppressor_passes_a_message_once_per_interval_and_counts_the_rest():
    now = [100.0]
    suppressor = RepeatSuppressor(30.0, clock=lambda: now[0])

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("librdkafka", logging.ERROR, __file__, 1, message, None, None)

    first = record("Connect to 127.0.0.1:1 failed (after 0ms in state CONNECT)")
    assert suppressor.filter(first)
    held_back = [
        suppressor.filter(record(f"Connect to 127.0.0.1:1 failed (after {ms}ms in state CONNECT)"))
        for ms in (1, 2, 3)
    ]
    assert held_back == [False, False, False]
    assert suppressor.filter(record("another message")), "a different message is not held back"
    now[0] += 30.0
    later = record("Connect to 127.0.0.1:1 failed (after 5ms in state CONNECT)")
    assert suppressor.filter(later)
    assert later.suppressed_repeats == 3  # type: ignore[attr-defined]
    assert "repeated 3 more times in 30s" in later.getMessage()


def test_librdkafka_lines_go_through_logging_rate_limited(capfd, caplog):
    caplog.set_level(logging.DEBUG)
    closed = f"127.0.0.1:{free_port()}"
    settings = load(StreamSettings, kafka_bootstrap_servers=closed)
    producer = Producer(producer_config(settings, "test", **{"reconnect.backoff.ms": 10}))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        producer.poll(0.1)
    from_librdkafka = [r for r in caplog.records if r.name == LIBRDKAFKA_LOGGER]
    assert from_librdkafka, "librdkafka's connection failures are logged"
    # librdkafka retried dozens of times in 3 s; each distinct message passes once.
    messages = [r.getMessage() for r in from_librdkafka]
    assert len(messages) <= 3, messages
    assert "Connection refused" in " ".join(messages)
    assert "%3|" not in capfd.readouterr().err, "nothing raw on stderr"


SECRETS = {
    "EVENTFED_KAFKA_SASL_PASSWORD": "kafka-pw-Zq81",
    "EVENTFED_TRANSPORT_URL": "rabbit://nova:rabbit-pw-Xk22@127.0.0.1:1/",
    "EVENTFED_API_AUTH_TOKEN": "api-token-Lm93",
    "EVENTFED_API_BASIC_PASSWORD": "basic-pw-Rt47",
    "EVENTFED_KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD,
}
SECRET_VALUES = ("kafka-pw-Zq81", "rabbit-pw-Xk22", "api-token-Lm93", "basic-pw-Rt47", KEY_PASSWORD)


def test_no_secret_is_logged_by_settings_loading_or_client_set_up(monkeypatch, capfd, tmp_path):
    from bridge.api.app import create_app
    from bridge.api.read_model import KafkaReadModel
    from bridge.listener.service import Listener
    from streams.app import faust_broker_settings

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    # SASL over mutual TLS with an encrypted client key, and RabbitMQ over TLS: every secret at once.
    pki = make_pki(tmp_path / "pki")
    monkeypatch.setenv("EVENTFED_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("EVENTFED_KAFKA_SSL_CA_LOCATION", str(pki.ca))
    monkeypatch.setenv("EVENTFED_KAFKA_SSL_CERTIFICATE_LOCATION", str(pki.client_cert))
    monkeypatch.setenv("EVENTFED_KAFKA_SSL_KEY_LOCATION", str(pki.client_key_encrypted))
    monkeypatch.setenv("EVENTFED_RABBIT_SSL", "true")
    monkeypatch.setenv("EVENTFED_RABBIT_SSL_CA_FILE", str(pki.ca))
    monkeypatch.setenv("EVENTFED_KAFKA_SASL_USERNAME", "eventfed")
    monkeypatch.setenv("EVENTFED_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("EVENTFED_VIM_ID", "owner_region")
    monkeypatch.setenv("EVENTFED_API_BASIC_USER", "onap")
    # Every record at every level, as the deployables write them: JSON lines on stderr.
    configure("DEBUG", "json", "test")

    listener_settings = load(ListenerSettings)
    api_settings = load(ApiSettings)
    stream_settings = load(StreamSettings)
    # A settings error next to the secrets names the bad setting only.
    monkeypatch.setenv("EVENTFED_API_PORT", "not-a-port")
    with pytest.raises(SettingsError) as error:
        load(ApiSettings)
    monkeypatch.delenv("EVENTFED_API_PORT")
    # A wrong key password is named, not shown; nor is the right one.
    monkeypatch.setenv("EVENTFED_KAFKA_SSL_KEY_PASSWORD", "wrong-" + KEY_PASSWORD)
    with pytest.raises(SettingsError) as key_error:
        load(StreamSettings)
    assert "EVENTFED_KAFKA_SSL_KEY_PASSWORD: wrong password" in str(key_error.value)
    monkeypatch.setenv("EVENTFED_KAFKA_SSL_KEY_PASSWORD", KEY_PASSWORD)

    debug = {"debug": "generic,broker,security,conf"}
    clients = [
        Producer(producer_config(stream_settings, "test", **debug)),
        Consumer(consumer_config(stream_settings, "test", None, **debug)),
        AdminClient({**admin_config(stream_settings), **debug}),
    ]
    listener = Listener(listener_settings)
    read_model = KafkaReadModel(api_settings)
    create_app(api_settings, read_model)
    faust_broker_settings(stream_settings)
    read_model.start()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        for client in clients:
            client.poll(0.05)
    read_model.stop()
    clients[1].close()
    listener.transport.cleanup()

    seen = capfd.readouterr()
    records = _json_lines(seen.err)  # every line is a JSON record: nothing raw from librdkafka
    assert any(r["logger"] == LIBRDKAFKA_LOGGER for r in records), "librdkafka's debug lines were seen"
    assert {"bridge.listener.service", "bridge.api.read_model"} <= {r["logger"] for r in records}
    for text in (seen.out, seen.err, str(error.value), str(key_error.value)):
        for secret in SECRET_VALUES:
            assert secret not in text


def test_client_error_callback_does_not_double_librdkafka_lines(caplog):
    from confluent_kafka import KafkaError

    from bridge.kafka_config import _log_client_error

    caplog.set_level(logging.DEBUG)
    logging.getLogger(LIBRDKAFKA_LOGGER).filters.clear()  # a fresh suppressor for this test
    transport = KafkaError(
        kafka_error_internals.TRANSPORT, "127.0.0.1:1/bootstrap: Connect failed (after 3ms)"
    )
    for _ in range(20):
        _log_client_error(transport)
        _log_client_error(KafkaError(kafka_error_internals.ALL_BROKERS_DOWN, "1/1 brokers are down"))
    _log_client_error(KafkaError(kafka_error_internals.FENCED, "producer fenced", fatal=True))
    warnings = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert warnings[0][0] == "WARNING" and "1/1 brokers are down" in warnings[0][1]
    assert warnings[1][0] == "ERROR" and "producer fenced" in warnings[1][1]


def test_repeated_warnings_of_a_named_logger_are_suppressed_but_its_info_lines_are_not(caplog):
    from bridge.logs import suppress_repeated_warnings

    caplog.set_level(logging.INFO)
    name = "eventfed.test.read_model"
    suppress_repeated_warnings(name)
    log = logging.getLogger(name)
    for attempt in range(50):
        log.warning("kafka client error: Connect failed (after %dms)", attempt)
        log.info("replayed %d records", attempt)
    levels = [r.levelname for r in caplog.records if r.name == name]
    assert levels.count("WARNING") == 1
    assert levels.count("INFO") == 50
