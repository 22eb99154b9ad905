"""`eventfed listen`: Nova notifications from one cloud's RabbitMQ into the raw Kafka topic.

Every batch is produced to Kafka and acked on RabbitMQ only once Kafka has acknowledged every
record of it (bridge.listener.endpoint); this module wires the oslo transport, the producer and the
health endpoint together, and stops them in order.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer

from bridge.deployable import CannotStart, run_deployable
from bridge.durability import DurabilityMismatch, declare, oslo_override
from bridge.gc_thresholds import settle_after_start_up
from bridge.kafka_config import (
    KafkaTlsRefused,
    confirmed_producer_config,
    explain_tls_failure,
    last_transport_error,
)
from bridge.listener import oslo_internals
from bridge.listener.connect import CONNECT_FAILURES, UNREACHABLE, Connector, ConnectProblem, classify
from bridge.listener.endpoint import NotificationEndpoint, ordered_batch_listener
from bridge.rabbit_tls import apply_to_oslo, handshake, kombu_connection
from bridge.raw_writer import KafkaBatchWriter
from bridge.retry import Backoff
from bridge.settings import ListenerSettings, VimListenerSettings, redact_url
from bridge.topic_admin import core_topics, ensure_topics
from bridge.vims import single_vim

LOG = logging.getLogger(__name__)
# How long one wait for a batch's first notification lasts before the polling thread sends the
# acknowledgements queued meanwhile and looks for a stop: the longest an idle listener keeps a
# handled batch unacked, and about how long a stop takes.
IDLE_WAIT_SECONDS = 0.2


class Listener:
    """The oslo batch listener, the Kafka producer and their readiness, for one VIM.

    `producer`: the VIM's lane of a producer shared by several VIMs (bridge.shared_producer);
    None: a producer of its own. `idle_wait`: see IDLE_WAIT_SECONDS."""

    def __init__(
        self,
        settings: VimListenerSettings,
        producer: Any | None = None,
        idle_wait: float = IDLE_WAIT_SECONDS,
    ) -> None:
        import oslo_messaging
        from oslo_config import cfg

        self.settings = settings
        self.stop_event = threading.Event()
        self._idle_wait = idle_wait
        self.producer = producer or Producer(
            confirmed_producer_config(settings, f"listen-{settings.vim_id}", settings.delivery_timeout)
        )
        writer = KafkaBatchWriter.from_settings(self.producer, settings)
        # The oslo internals the lingering poll and the adaptive window rely on, checked once.
        self._missing_internals = oslo_internals.missing_internals()
        if self._missing_internals:
            LOG.warning(
                "this oslo.messaging lacks %s: the batch window stays at %ss, polled from its start",
                ", ".join(self._missing_internals),
                settings.batch_timeout,
            )
        self.endpoint = NotificationEndpoint(settings, writer, self.stop_event, self._window_setter())
        self._conf = oslo_config(settings)
        url = settings.transport_url.get_secret_value()
        parsed = oslo_messaging.TransportURL.parse(self._conf, url)
        self.rabbit_hosts = [(h.hostname or "127.0.0.1", int(h.port or 5672)) for h in parsed.hosts]
        self._parsed_url = parsed
        self.transport = oslo_messaging.get_notification_transport(self._conf, url=url)
        apply_to_oslo(self._conf, settings)
        with contextlib.suppress(cfg.NoSuchOptError, cfg.NoSuchGroupError):
            oslo_override(self._conf, settings.durable_queues)
        # oslo's default (0) lets RabbitMQ push a whole backlog into this process while Kafka is
        # down; two batches in hand keep the next one filling while the current one is written.
        with contextlib.suppress(cfg.NoSuchOptError, cfg.NoSuchGroupError):
            self._conf.set_override(
                "rabbit_qos_prefetch_count", 2 * settings.batch_size, group="oslo_messaging_rabbit"
            )
        self._targets = [
            oslo_messaging.Target(topic=topic, exchange=settings.exchange) for topic in settings.topics
        ] + [
            # Ceilometer's samples into the same pool queue: one consumer, one order, one ack rule.
            oslo_messaging.Target(topic=topic, exchange=settings.sample_exchange)
            for topic in settings.sample_topics
        ]
        self.server = self._new_server()
        user = parsed.hosts[0].username if parsed.hosts else None
        self._classify = lambda exc: classify(exc, user or "guest", parsed.virtual_host or "/")
        self.connector = Connector(
            self._connect_once,
            self._classify,
            Backoff(settings.retry_backoff_initial, settings.retry_backoff_max),
            self.stop_event,
            vim=settings.vim_id,
        )
        # One batch at a time: concurrent batches would reorder a VM's notifications.
        self._conf.set_override("executor_thread_pool_size", 1)
        self._consuming = False
        self._kafka_checked_at = 0.0
        self._kafka_ok: tuple[bool, str] = (False, "not checked yet")
        _log_start(settings)

    def _window_setter(self) -> Callable[[float], object] | None:
        """How the endpoint widens oslo's batch window under load; None keeps it fixed."""
        fixed = (
            max(self.settings.batch_timeout_max, self.settings.batch_company_wait)
            <= self.settings.batch_timeout
        )
        if fixed or self._missing_internals:
            return None
        return lambda seconds: oslo_internals.set_batch_timeout(self.server, seconds)

    def _new_server(self) -> Any:
        return ordered_batch_listener(
            self.transport,
            self._targets,
            self.endpoint,
            self.settings.pool,
            self.settings.batch_size,
            self.settings.batch_timeout,
        )

    def _connect_once(self) -> ConnectProblem | None:
        """One attempt: reach a host (TLS included), log in, declare, then start oslo's server."""
        problem = handshake(self.settings, self.rabbit_hosts)
        if problem is not None:
            return ConnectProblem(UNREACHABLE, f"rabbitmq unreachable: {problem}")
        check_declarations(self._parsed_url, self.settings)
        try:
            self.start()
        except Exception:
            # A server whose start() failed is not started again: the next attempt gets a new one.
            self.server = self._new_server()
            raise
        return None

    def connect(self) -> bool:
        """Attempt until consuming (True) or stopped (False); raises DurabilityMismatch."""
        return self.connector.run()

    def start(self) -> None:
        self.server.start()
        # Without the internals (warned about at start-up), oslo's own polling: the same
        # batches, a poll every window while idle.
        if not self._missing_internals:
            oslo_internals.linger(self.server, self._idle_wait)
        self._consuming = True

    def stop(self) -> None:
        """Stop consuming, let the batch in hand finish, flush Kafka."""
        self.stop_event.set()
        self.server.stop()
        self.server.wait()
        self.producer.flush(self.settings.delivery_timeout)
        self.transport.cleanup()

    @property
    def consuming(self) -> bool:
        return self._consuming

    def connection_lost(self) -> bool:
        """Consuming, but the connection to RabbitMQ is down now: oslo is reconnecting by itself
        (a virtual host deleted, permissions revoked, the broker closed or restarted it)."""
        return self._consuming and oslo_internals.connection_open(self.server) is False

    def why_lost(self) -> str:
        """Why RabbitMQ does not take this listener's connection, in one line, from a login of
        our own (oslo's reconnections say it only in its log). A refused login counts in
        eventfed_listener_rabbit_connect_failures_total as the connector's attempts do."""
        unreachable = handshake(self.settings, self.rabbit_hosts)
        if unreachable is not None:
            CONNECT_FAILURES.labels(self.settings.vim_id, UNREACHABLE).inc()
            return f"rabbitmq unreachable: {unreachable}"
        try:
            check_login(self._parsed_url, self.settings)
        except Exception as exc:
            problem = self._classify(exc)
            CONNECT_FAILURES.labels(self.settings.vim_id, problem.kind).inc()
            return problem.reason
        return "RabbitMQ takes the login again: oslo is reconnecting"

    def readiness(self) -> tuple[bool, str]:
        if self.stop_event.is_set():
            return False, "not consuming"
        if not self._consuming:
            problem = self.connector.problem
            return False, problem.reason if problem is not None else "connecting to RabbitMQ"
        now = time.monotonic()
        if now - self._kafka_checked_at > 5:
            self._kafka_checked_at = now
            try:
                self.producer.list_topics(self.settings.raw_topic, timeout=3)
                self._kafka_ok = (True, "")
            except Exception as exc:
                refused = explain_tls_failure(last_transport_error(), self.settings)
                self._kafka_ok = (False, f"kafka unreachable: {refused or exc}")
        if not self._kafka_ok[0]:
            return self._kafka_ok
        if self.connection_lost():
            return False, f"connection to RabbitMQ lost: {self.why_lost()}"
        unreachable = handshake(self.settings, self.rabbit_hosts)
        if unreachable is not None:
            return False, f"rabbitmq unreachable: {unreachable}"
        return True, "connected"


def oslo_config(settings: VimListenerSettings) -> Any:
    """oslo's configuration for this listener, read from nothing but the settings."""
    import oslo_messaging
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    conf([], project="eventfed", default_config_files=[], default_config_dirs=[])
    oslo_messaging.set_transport_defaults(control_exchange=settings.exchange)
    return conf


def _log_start(settings: VimListenerSettings) -> None:
    LOG.info(
        "listening for vim %s on %s exchange=%s topics=%s pool=%s durable=%s -> kafka %s topic %s",
        settings.vim_id,
        redact_url(settings.transport_url.get_secret_value()),
        settings.exchange,
        ",".join(settings.topics),
        settings.pool,
        settings.durable_queues,
        settings.kafka_bootstrap_servers,
        settings.raw_topic,
    )
    if settings.sample_topics:
        LOG.info(
            "also taking Ceilometer samples: exchange=%s topics=%s",
            settings.sample_exchange,
            ",".join(settings.sample_topics),
        )


def check_declarations(url: Any, settings: VimListenerSettings) -> None:
    """Log in and declare the exchange and the pool queue with the configured durability, before
    oslo does, on the first host that lets us.

    A durability mismatch raises DurabilityMismatch (the listener stops); any other failure on
    every host raises the last host's error, for the connector to classify and retry.
    """
    if url.transport not in ("rabbit", "amqp"):
        return  # oslo's in-memory fake:// transport, for tests
    virtual_host = url.virtual_host or "/"
    last_error: Exception | None = None
    for host in url.hosts:
        try:
            with kombu_connection(host, virtual_host, 5, settings) as connection:
                connection.connect()
                declare(connection, virtual_host, settings.exchange, settings.durable_queues, settings.pool)
                if settings.sample_topics:
                    declare(connection, virtual_host, settings.sample_exchange, settings.durable_queues)
            return
        except DurabilityMismatch:
            raise
        except Exception as exc:
            last_error = exc
    if last_error is not None:
        raise last_error


def check_login(url: Any, settings: VimListenerSettings) -> None:
    """Log in to the virtual host on the first host that lets us; raises the last host's error."""
    if url.transport not in ("rabbit", "amqp"):
        return
    last_error: Exception | None = None
    for host in url.hosts:
        try:
            with kombu_connection(host, url.virtual_host or "/", 5, settings) as connection:
                connection.connect()
            return
        except Exception as exc:
            last_error = exc
    if last_error is not None:
        raise last_error


class StartupReadiness:
    """The health endpoint's readiness check from the first second: not ready, saying what
    start-up is doing, until the running listener's own check takes over."""

    def __init__(self) -> None:
        self.stage = "starting"
        self.check: Callable[[], tuple[bool, str]] | None = None

    def __call__(self) -> tuple[bool, str]:
        if self.check is not None:
            return self.check()
        return False, self.stage


class ListenerDeployable:
    """`eventfed listen` in the deployable skeleton (bridge.deployable): check the topics, connect
    to RabbitMQ in a thread of its own, consume until a signal, then finish the batch in hand."""

    name = "listener"
    handles_signals = False

    def __init__(self, settings: VimListenerSettings) -> None:
        missing = oslo_internals.missing_dispatcher_internals()
        if missing:
            LOG.error(
                "cannot start: this oslo.messaging lacks what eventfed relies on: %s", ", ".join(missing)
            )
            raise CannotStart(2)
        self.settings = settings
        self.readiness = StartupReadiness()
        self.listener: Listener | None = None
        self.stop_requested = threading.Event()
        self.fatal: list[DurabilityMismatch] = []

    def start(self) -> None:
        self.readiness.stage = "checking the raw and dead-letter topics"
        check_topics(self.settings)
        self.readiness.stage = "connecting to RabbitMQ"
        self.listener = Listener(self.settings)
        self.readiness.check = self.listener.readiness

    def work(self) -> int:
        """Consume until SIGTERM or SIGINT; 2 when RabbitMQ's declarations do not match ours."""
        # Connecting retries for as long as RabbitMQ refuses (bridge.listener.connect); in a
        # thread of its own so that SIGTERM meanwhile still stops the process, even inside oslo's
        # start().
        starter = threading.Thread(target=self._connect, name="rabbit-connect", daemon=True)
        starter.start()
        while not self.stop_requested.wait(1.0):
            pass
        if self.fatal:
            LOG.error("eventfed listen: %s", self.fatal[0])
            return 2
        return 0

    def _connect(self) -> None:
        assert self.listener is not None
        try:
            if not self.listener.connect():
                return
        except DurabilityMismatch as exc:
            self.fatal.append(exc)
            self.stop_requested.set()
            return
        # With CPython's default thresholds: oslo's receive path leaves cyclic garbage per
        # message, best collected young and often (bridge.gc_thresholds).
        settle_after_start_up()

    def request_stop(self, signum: int) -> None:
        LOG.info("signal %d: stopping after the batch in hand", signum)
        self.stop_requested.set()

    def drain(self) -> None:
        """Finish the batch in hand (written to Kafka, then acked) and flush."""
        listener = self.listener
        if listener is None:
            return
        if self.fatal or not listener.consuming:
            listener.stop_event.set()  # ends the connector's wait
            if not self.fatal:
                LOG.info("stopping before RabbitMQ accepted the connection: nothing was consumed")
            return
        listener.stop()


def build(settings: ListenerSettings) -> ListenerDeployable | Any:
    """The VIMs of the VIMs file (bridge.listener.fleet), or the environment's one VIM."""
    if settings.vims_file is not None:
        from bridge.listener.fleet import ListenerFleetDeployable

        return ListenerFleetDeployable(settings)
    return ListenerDeployable(single_vim(settings, VimListenerSettings))


def run(args: argparse.Namespace) -> int:
    return run_deployable("listen", ListenerSettings, build)


def check_topics(settings: ListenerSettings) -> None:
    wanted = (settings.raw_topic, settings.dlq_topic)
    try:
        ensure_topics(settings, [spec for spec in core_topics(settings) if spec.name in wanted])
    except KafkaTlsRefused as exc:
        # Not fatal either, but a configuration error: said once at ERROR; readiness says it too.
        LOG.error("could not check the raw and dead-letter topics: %s", exc)
    except Exception as exc:
        # Not fatal: Kafka may be down at start-up; batches then wait in RabbitMQ until it is back.
        LOG.warning("could not check the raw and dead-letter topics: %s", exc)
