"""Kafka client defaults, in one place for every eventfed component.

Producers are idempotent with acks=all and the murmur2 partitioner, which is what the Java
clients and aiokafka (Faust) use, so a key lands on the same partition whoever writes it: the
listener (librdkafka) and the stream worker (aiokafka) must agree for per-VM order to hold.
Consumers never auto-commit: an offset is committed only after the message is handled.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from confluent_kafka import KafkaError, murmur2

from bridge import kafka_error_internals
from bridge.logs import librdkafka_logger
from bridge.settings import ENV_PREFIX, CommonSettings
from bridge.tls import client_context

LOG = logging.getLogger(__name__)


def security_config(settings: CommonSettings) -> dict[str, Any]:
    """librdkafka security properties for the configured protocol."""
    config: dict[str, Any] = {"security.protocol": settings.kafka_security_protocol.lower()}
    if settings.kafka_security_protocol.startswith("SASL"):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        assert settings.kafka_sasl_password is not None  # CommonSettings refuses SASL without it
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_ca_location is not None:
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_location)
    # Mutual TLS: the client certificate a listener with ssl.client.auth=required (Strimzi's
    # `tls` authentication) checks. CommonSettings has already loaded the pair, so a bad one was
    # refused at start-up with the setting's name, not here inside librdkafka.
    if settings.kafka_ssl_certificate_location is not None:
        config["ssl.certificate.location"] = str(settings.kafka_ssl_certificate_location)
    if settings.kafka_ssl_key_location is not None:
        config["ssl.key.location"] = str(settings.kafka_ssl_key_location)
    if settings.kafka_ssl_key_password is not None:
        config["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
    return config


def ssl_context(settings: CommonSettings) -> ssl.SSLContext | None:
    """The same TLS set-up for clients that take an SSLContext (aiokafka, under Faust): server
    verified against the CA and its host name (as librdkafka's default
    ssl.endpoint.identification.algorithm=https does), the client certificate presented.
    None when the protocol does not use TLS."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    return client_context(settings.kafka_tls())


class KafkaTlsRefused(Exception):
    """The TLS handshake with Kafka failed for a reason retrying will not fix (a certificate the
    broker refuses or a broker certificate this client does not trust); the message says which."""


# The last transport error any client of this process reported (librdkafka calls error_cb from
# poll()); TLS failures show only there, a waiting caller otherwise just times out.
_last_transport_error: list[str] = []


def last_transport_error() -> str | None:
    return _last_transport_error[-1] if _last_transport_error else None


def forget_transport_error() -> None:
    """Start a fresh wait: an error from before (fixed since, say) must not be reported again."""
    _last_transport_error.clear()


def explain_tls_failure(error: str | None, settings: CommonSettings) -> str | None:
    """What a librdkafka transport error means for the TLS settings, in an operator's words; None
    when it is no TLS failure (an outage, say, which retrying does fix)."""
    if not error:
        return None
    text = error.lower()
    if any(
        alert in text for alert in ("alert bad certificate", "alert certificate required", "alert unknown ca")
    ):
        if settings.kafka_ssl_certificate_location is None:
            hint = (
                f"none is configured: set {ENV_PREFIX}KAFKA_SSL_CERTIFICATE_LOCATION and "
                f"{ENV_PREFIX}KAFKA_SSL_KEY_LOCATION"
            )
        else:
            hint = f"is {settings.kafka_ssl_certificate_location} signed by a CA the broker trusts?"
        return f"the broker refused this client's TLS certificate ({hint}); librdkafka: {_detail(error)}"
    if "certificate verify failed" in text:
        return (
            f"the broker's TLS certificate is not trusted (check {ENV_PREFIX}KAFKA_SSL_CA_LOCATION); "
            f"librdkafka: {_detail(error)}"
        )
    if "ssl handshake failed" in text:
        return f"the TLS handshake failed; librdkafka: {_detail(error)}"
    return None


def _detail(error: str) -> str:
    """librdkafka's reason without the KafkaError wrapper and the broker-state suffix."""
    text = error.split('str="', 1)[-1].rstrip('"}')
    return text.split(" (after ", 1)[0]


def record_client_error(error: KafkaError) -> None:
    """An error callback for a client whose caller reports failures itself: remembered, not logged."""
    if error.code() in (kafka_error_internals.TRANSPORT, kafka_error_internals.SSL):
        # librdkafka reports a failed TLS handshake as either. Kept short: one entry is all a
        # waiting caller needs.
        _last_transport_error[:] = [str(error)]


def _log_client_error(error: KafkaError) -> None:
    record_client_error(error)
    if error.fatal():
        LOG.error("kafka client failed: %s", error)
    elif error.code() == kafka_error_internals.TRANSPORT:
        # librdkafka's own FAIL line (through the librdkafka logger) already says this.
        LOG.debug("kafka client error: %s", error)
    else:
        # Retried internally; through the librdkafka logger's repeat suppressor, an outage is a
        # line per interval rather than one per retry.
        librdkafka_logger().warning("kafka client error: %s", error)


def common_config(settings: CommonSettings, client_suffix: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": f"{settings.kafka_client_id}-{client_suffix}",
        "error_cb": _log_client_error,
        # librdkafka's lines go through Python logging (JSON, rate-limited) instead of raw to
        # stderr; they are delivered when the client is polled or flushed.
        "logger": librdkafka_logger(),
        **security_config(settings),
    }


def producer_config(settings: CommonSettings, client_suffix: str, **overrides: Any) -> dict[str, Any]:
    """An idempotent, ordered, durable producer."""
    config = {
        **common_config(settings, client_suffix),
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        # Bounded so a caller waiting on delivery reports hears about an outage; the listener
        # then requeues to RabbitMQ instead of holding the batch forever.
        "message.timeout.ms": 30_000,
    }
    config.update(overrides)
    return config


# For a producer written only through bridge.kafka_delivery.produce_and_confirm, which tells an
# acknowledged record by the producer's empty queue after the flush: librdkafka then reports only
# the refused records. A report for every record would cost the writer a Python callback (and
# the GIL) per acknowledged record, on the hottest path of both the listener and the worker.
REPORT_ONLY_ERRORS = {"delivery.report.only.error": True}


def confirmed_producer_config(
    settings: CommonSettings, client_suffix: str, delivery_timeout: float, linger: float | None = None
) -> dict[str, Any]:
    """A producer written only through produce_and_confirm: refusals reported, every delivery
    settled within `delivery_timeout` seconds (librdkafka's message.timeout.ms). `linger`: how
    long a record may wait for company before it is sent unless a flush sends it sooner (for
    records confirmed on a cadence rather than one by one); the default's 5 ms if None."""
    overrides: dict[str, Any] = {"message.timeout.ms": int(delivery_timeout * 1000)}
    if linger is not None:
        overrides["linger.ms"] = int(linger * 1000)
    return producer_config(settings, client_suffix, **REPORT_ONLY_ERRORS, **overrides)


def shared_producer_config(
    settings: CommonSettings, client_suffix: str, delivery_timeout: float, queue_bytes: int
) -> dict[str, Any]:
    """One producer shared by many writers (bridge.shared_producer): each waits on its own
    records' delivery reports, so every record is reported. `queue_bytes` bounds what the process
    holds unacknowledged; the writers' shares of it add up to half, so that none of them meets a
    full queue because of another."""
    return producer_config(
        settings,
        client_suffix,
        **{
            "message.timeout.ms": int(delivery_timeout * 1000),
            "queue.buffering.max.kbytes": max(1, 2 * queue_bytes // 1024),
        },
    )


def consumer_config(
    settings: CommonSettings, client_suffix: str, group_id: str | None, **overrides: Any
) -> dict[str, Any]:
    """A consumer that commits only what the caller says it has handled."""
    config: dict[str, Any] = {
        **common_config(settings, client_suffix),
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    # librdkafka requires a group.id even for a consumer that only uses assign().
    config["group.id"] = group_id or f"{settings.kafka_client_id}-{client_suffix}-nogroup"
    config.update(overrides)
    return config


def admin_config(settings: CommonSettings, client_suffix: str = "admin") -> dict[str, Any]:
    return common_config(settings, client_suffix)


class KeyPartitioner:
    """The partition the producers' `murmur2_random` partitioner gives a key, for records that
    are produced to an explicit partition but must land where their key would have: librdkafka's
    own murmur2 (the Java client's and aiokafka's too), through confluent-kafka."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def __call__(self, key: bytes) -> int:
        return int(murmur2(key, self.partitions))
