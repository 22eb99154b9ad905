"""TLS settings: every unusable file or combination listed in one error at start-up, and the same
material handed to librdkafka, aiokafka (Faust) and oslo.messaging."""

from __future__ import annotations

import ssl

import pytest

from bridge import kafka_error_internals
from bridge.kafka_config import explain_tls_failure, security_config, ssl_context
from bridge.rabbit_tls import apply_to_oslo, kombu_ssl, oslo_overrides
from bridge.settings import (
    ApiSettings,
    ListenerSettings,
    SettingsError,
    SimulateSettings,
    StreamSettings,
    load,
)
from tests.support.tls import KEY_PASSWORD, Pki, make_pki

pytestmark = pytest.mark.usefixtures("no_eventfed_env")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _problems(settings_cls, **values) -> str:
    with pytest.raises(SettingsError) as error:
        load(settings_cls, **values)
    return str(error.value)


def test_mutual_tls_settings_reach_librdkafka_and_aiokafka(pki):
    settings = load(
        StreamSettings,
        kafka_security_protocol="SSL",
        kafka_ssl_ca_location=pki.ca,
        kafka_ssl_certificate_location=pki.client_cert,
        kafka_ssl_key_location=pki.client_key_encrypted,
        kafka_ssl_key_password=KEY_PASSWORD,
    )
    assert security_config(settings) == {
        "security.protocol": "ssl",
        "ssl.ca.location": str(pki.ca),
        "ssl.certificate.location": str(pki.client_cert),
        "ssl.key.location": str(pki.client_key_encrypted),
        "ssl.key.password": KEY_PASSWORD,
    }
    context = ssl_context(settings)
    assert context is not None and context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert KEY_PASSWORD not in repr(settings)

    from faust.auth import SSLCredentials

    from streams.app import faust_broker_settings

    credentials = faust_broker_settings(settings)["broker_credentials"]
    assert isinstance(credentials, SSLCredentials)
    assert credentials.context.verify_mode == ssl.CERT_REQUIRED
    assert ssl_context(load(StreamSettings)) is None, "PLAINTEXT has no TLS context"


def test_every_tls_problem_is_listed_in_one_error(pki, tmp_path):
    message = _problems(
        ApiSettings,
        kafka_security_protocol="SSL",
        kafka_ssl_ca_location=tmp_path / "no-ca.crt",
        kafka_ssl_certificate_location=pki.client_cert,
    )
    assert "EVENTFED_KAFKA_SSL_CA_LOCATION: no such file" in message
    assert (
        "EVENTFED_KAFKA_SSL_CERTIFICATE_LOCATION is set but EVENTFED_KAFKA_SSL_KEY_LOCATION is not" in message
    )
    assert message.count("; ") == 1, message

    message = _problems(
        ApiSettings,
        kafka_ssl_key_location=pki.client_key,
        kafka_ssl_key_password="x",
        kafka_ssl_ca_location=pki.server_key,
    )
    assert "EVENTFED_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS" in message
    assert (
        "EVENTFED_KAFKA_SSL_KEY_LOCATION is set but EVENTFED_KAFKA_SSL_CERTIFICATE_LOCATION is not" in message
    )
    assert "holds no PEM CA certificate" in message


@pytest.mark.parametrize(
    ("key", "password", "expected"),
    [
        ("client_key_encrypted", None, "is encrypted: set EVENTFED_KAFKA_SSL_KEY_PASSWORD"),
        ("client_key_encrypted", "not-the-pw-Qa19", "EVENTFED_KAFKA_SSL_KEY_PASSWORD: wrong password"),
        ("server_key", None, "is not the key of the certificate"),
        ("ca", None, "holds no PEM private key"),
    ],
)
def test_a_key_that_cannot_be_used_is_named(pki, key, password, expected):
    message = _problems(
        StreamSettings,
        kafka_security_protocol="SSL",
        kafka_ssl_certificate_location=pki.client_cert,
        kafka_ssl_key_location=getattr(pki, key),
        kafka_ssl_key_password=password,
    )
    assert expected in message
    if password:
        assert password not in message


def test_an_unreadable_file_is_named(pki, tmp_path):
    import os

    if os.getuid() == 0:
        # root reads any file: a folder in place of the file is the unreadable case here.
        unreadable = tmp_path
        expected = "is not a file"
    else:
        unreadable = tmp_path / "key.pem"
        unreadable.write_text(pki.client_key.read_text())
        unreadable.chmod(0)
        expected = "is not readable"
    message = _problems(
        ApiSettings,
        kafka_security_protocol="SSL",
        kafka_ssl_certificate_location=pki.client_cert,
        kafka_ssl_key_location=unreadable,
    )
    assert f"EVENTFED_KAFKA_SSL_KEY_LOCATION: {unreadable} {expected}" in message


def test_rabbit_tls_rules(pki):
    base = {"transport_url": "rabbit://u:p@h:5671/", "vim_id": "o_r"}
    message = _problems(
        ListenerSettings, **base, rabbit_ssl_ca_file=pki.ca, rabbit_ssl_cert_file=pki.client_cert
    )
    assert "EVENTFED_RABBIT_SSL_* files are set but EVENTFED_RABBIT_SSL is false" in message
    assert "EVENTFED_RABBIT_SSL_CERT_FILE is set but EVENTFED_RABBIT_SSL_KEY_FILE is not" in message
    message = _problems(
        SimulateSettings,
        rabbit_ssl=True,
        rabbit_ssl_cert_file=pki.client_cert,
        rabbit_ssl_key_file=pki.client_key_encrypted,
    )
    assert "is encrypted, and this client cannot take a key password" in message
    settings = load(
        ListenerSettings,
        **base,
        rabbit_ssl=True,
        rabbit_ssl_ca_file=pki.ca,
        rabbit_ssl_cert_file=pki.client_cert,
        rabbit_ssl_key_file=pki.client_key,
    )
    assert oslo_overrides(settings) == {
        "ssl": True,
        "ssl_ca_file": str(pki.ca),
        "ssl_cert_file": str(pki.client_cert),
        "ssl_key_file": str(pki.client_key),
    }
    assert kombu_ssl(settings, "h") == {
        "certfile": str(pki.client_cert),
        "keyfile": str(pki.client_key),
        "ca_certs": str(pki.ca),
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": "h",
    }
    assert kombu_ssl(load(ListenerSettings, **base), "h") is False


def test_rabbit_tls_reaches_oslo_messaging_rabbit_driver(pki):
    import oslo_messaging
    from oslo_config import cfg

    settings = load(
        ListenerSettings,
        transport_url="rabbit://u:p@127.0.0.1:1/",
        vim_id="o_r",
        rabbit_ssl=True,
        rabbit_ssl_ca_file=pki.ca,
    )
    conf = cfg.ConfigOpts()
    conf([], project="eventfed-test", default_config_files=[], default_config_dirs=[])
    transport = oslo_messaging.get_notification_transport(conf, url="rabbit://u:p@127.0.0.1:1/")
    try:
        apply_to_oslo(conf, settings)
        assert conf.oslo_messaging_rabbit.ssl is True
        assert conf.oslo_messaging_rabbit.ssl_ca_file == str(pki.ca)
    finally:
        transport.cleanup()
    fake_conf = cfg.ConfigOpts()
    fake_conf([], project="eventfed-test", default_config_files=[], default_config_dirs=[])
    fake = oslo_messaging.get_notification_transport(fake_conf, url="fake://")
    try:
        with pytest.raises(SettingsError, match="not rabbit://"):
            apply_to_oslo(fake_conf, settings)
    finally:
        fake.cleanup()


@pytest.mark.parametrize(
    ("error", "cert", "expected"),
    [
        ("ssl://k:9093/bootstrap: Receive failed: ssl/tls alert bad certificate (after 0ms in state APIVERSION_QUERY)",
         None, "refused this client's TLS certificate (none is configured: set EVENTFED_KAFKA_SSL_CERTIFICATE_LOCATION"),
        ("ssl://k:9093/bootstrap: SSL handshake failed: tlsv13 alert certificate required",
         "/c.crt", "refused this client's TLS certificate (is /c.crt signed by a CA the broker trusts?)"),
        ("ssl://k:9093/bootstrap: error:0A000086:SSL routines::certificate verify failed (after 7ms in state SSL_HANDSHAKE)",
         None, "the broker's TLS certificate is not trusted (check EVENTFED_KAFKA_SSL_CA_LOCATION)"),
        ("127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused", None, None),
        (None, None, None),
    ],
)  # fmt: skip
def test_tls_failures_are_explained(error, cert, expected):
    # Built unchecked: the certificate named only has to appear in the explanation.
    settings = ApiSettings.model_construct(kafka_security_protocol="SSL", kafka_ssl_certificate_location=cert)
    explained = explain_tls_failure(error, settings)
    if expected is None:
        assert explained is None
    else:
        assert explained is not None and expected in explained
        assert "(after " not in explained, "librdkafka's broker-state suffix is dropped"


@pytest.mark.parametrize("code_name", ["TRANSPORT", "SSL"])
def test_a_failed_handshake_is_remembered_whichever_code_librdkafka_gives_it(code_name):
    from confluent_kafka import KafkaError

    from bridge.kafka_config import forget_transport_error, last_transport_error, record_client_error

    forget_transport_error()
    record_client_error(KafkaError(kafka_error_internals.ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert last_transport_error() is None
    failure = "ssl://k:9093/bootstrap: error:0A000086:SSL routines::certificate verify failed"
    record_client_error(KafkaError(getattr(kafka_error_internals, code_name), failure))
    remembered = last_transport_error()
    assert remembered is not None and "certificate verify failed" in remembered
    forget_transport_error()
