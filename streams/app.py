"""`eventfed stream`: the Faust app that turns raw notifications into events, state and feeds.

This module only wires things together: Faust's app, the raw topic and the state table, the
batch runner (streams.runner) with its producer and consumer-offsets port, the timers, and the
health endpoint. What a batch goes through, and why, is in streams.runner.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import time
from typing import Any

from confluent_kafka import KafkaException, Producer

from bridge.health import HealthServer, register_build_info
from bridge.heap import settle_after_start_up
from bridge.kafka_config import producer_config
from bridge.logs import setup_logging
from bridge.settings import StreamSettings, load
from bridge.topics import core_topics, ensure_topics
from streams import pipeline
from streams.faust_internals import FaustConsumerOffsets, in_recovery, missing_internals
from streams.runner import BatchRunner, BatchWriter
from streams.subscription_source import SubscriptionSource
from streams.subscriptions import SubscriptionError
from streams.topics import sink_topics

LOG = logging.getLogger(__name__)


def faust_broker_settings(settings: StreamSettings) -> dict[str, Any]:
    """Faust's broker URL and credentials for the configured security protocol."""
    from faust.auth import SASLCredentials, SSLCredentials

    servers = ";".join(f"kafka://{s.strip()}" for s in settings.kafka_bootstrap_servers.split(","))
    config: dict[str, Any] = {"broker": servers}
    protocol = settings.kafka_security_protocol
    ssl_context = None
    if protocol in ("SSL", "SASL_SSL"):
        import ssl

        ssl_context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_ca_location) if settings.kafka_ssl_ca_location else None
        )
    if protocol.startswith("SASL"):
        assert settings.kafka_sasl_password is not None
        config["broker_credentials"] = SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    elif protocol == "SSL":
        config["broker_credentials"] = SSLCredentials(ssl_context)
    return config


class StreamHealth:
    """What the probe thread reports: observed on Faust's event loop, read from another thread."""

    def __init__(self) -> None:
        self.observed: tuple[bool, str, float] = (False, "starting", 0.0)
        self.processed = lambda: 0

    def check(self) -> tuple[bool, str]:
        ready, reason, observed_at = self.observed
        if observed_at and time.monotonic() - observed_at > 30:
            return False, "the worker's event loop has not reported for 30s"
        return ready, f"{reason}; processed {self.processed()}"


def build_processor(settings: StreamSettings, subscriptions: SubscriptionSource) -> pipeline.Processor:
    confluent = None
    if settings.schema_registry_url:
        from streams.codecs import ConfluentCodec

        confluent = ConfluentCodec(settings.schema_registry_url)
    return pipeline.Processor(
        pipeline.Topics(events=settings.events_topic, dlq=settings.dlq_topic),
        subscriptions,
        settings.dedup_window_seconds,
        confluent,
    )


def build_app(
    settings: StreamSettings, subscriptions: SubscriptionSource, health: StreamHealth
) -> tuple[Any, BatchRunner]:
    import faust

    app = faust.App(
        settings.app_id,
        **faust_broker_settings(settings),
        store="memory://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        # Faust's own producer carries nothing of eventfed's: outputs go through BatchWriter.
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        stream_publish_on_commit=False,
        table_standby_replicas=1,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.session_timeout_seconds / 4,
        autodiscover=False,
    )
    keyed_topic = functools.partial(app.topic, key_serializer="raw", partitions=settings.partitions)
    # acks=False: Faust neither tracks nor commits these offsets; the BatchRunner does.
    raw_topic = keyed_topic(settings.raw_topic, value_serializer="raw", acks=False)
    # The compacted state topic is the table's changelog: one topic is both the API's read
    # model and the worker's recovery log, so the two can never disagree.
    state_changelog = keyed_topic(
        settings.state_topic, value_serializer="json", compacting=True, deleting=False
    )
    table = app.Table(
        "vm-state",
        default=None,
        partitions=settings.partitions,
        changelog_topic=state_changelog,
        schema=faust.Schema(key_serializer="raw", value_serializer="json"),
    )
    writer = BatchWriter(
        Producer(
            producer_config(
                settings, "stream", **{"message.timeout.ms": int(settings.delivery_timeout * 1000)}
            )
        ),
        delivery_timeout=settings.delivery_timeout,
    )
    runner = BatchRunner(
        build_processor(settings, subscriptions),
        writer,
        FaustConsumerOffsets(app),
        table.data,
        settings.state_topic,
        current_generation=lambda: app.consumer_generation_id,
        max_in_flight=settings.max_batches_in_flight,
    )
    health.processed = lambda: runner.processed

    @app.agent(raw_topic)
    async def process_raw(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_timeout):
            await runner.handle_batch([event.message for event in events])

    async def wait_for_writes_on_revoke(_app: Any, *_args: Any, **_kwargs: Any) -> None:
        # Called inside the rebalance, before this worker rejoins: the next owner of a partition
        # starts only after this worker's last write and commit for it.
        await runner.on_partitions_revoked()

    # mode's stub wants a keyword-only `signal` parameter; the runtime passes it in **kwargs.
    app.on_partitions_revoked.connect(wait_for_writes_on_revoke)  # type: ignore[arg-type]

    @app.timer(interval=settings.subscriptions_reload_seconds)
    async def reload_subscriptions() -> None:
        if subscriptions.reload_if_changed():
            # A new subscription's topic must exist before the first event is sent to it.
            specs = sink_topics(settings, subscriptions())
            await asyncio.get_running_loop().run_in_executor(None, ensure_topics, settings, specs)

    @app.timer(interval=0.2)
    async def commit_written() -> None:
        await runner.commit_written()

    @app.timer(interval=1.0)
    async def retry_stalled_seeks() -> None:
        await runner.retry_stalled_seeks()

    settled = False

    @app.timer(interval=1.0)
    async def observe_health() -> None:
        nonlocal settled
        # Read Faust's state here, on its own event loop; the probe thread only reads the result.
        if in_recovery(app):
            health.observed = (False, "recovering state", time.monotonic())
        else:
            if not settled:
                # Once, when the table is first recovered: later recoveries (after a rebalance)
                # only add their partitions' share.
                settled = True
                settle_after_start_up()
            actives = app.assignor.assigned_actives()
            health.observed = (True, f"{len(actives)} partitions active", time.monotonic())

    @app.timer(interval=max(1.0, min(60.0, settings.tombstone_seconds / 4)))
    async def expire_deleted() -> None:
        actives = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == settings.raw_topic}
        await runner.remove_expired_deletes(actives, time.time(), settings.tombstone_seconds)

    return app, runner


def run(args: argparse.Namespace) -> int:
    settings = load(StreamSettings)
    setup_logging(settings, "stream")
    register_build_info("stream")
    missing = missing_internals()
    if missing:
        LOG.error("cannot start: this faust-streaming lacks what eventfed relies on: %s", ", ".join(missing))
        return 2
    try:
        subscriptions = SubscriptionSource(settings.subscriptions_file)
    except (OSError, SubscriptionError) as exc:
        LOG.error("cannot start: %s", exc)
        return 2
    health = StreamHealth()
    health_server = None
    # Liveness first: creating topics can wait on an unreachable Kafka for the admin timeout,
    # and a probe that finds no endpoint meanwhile would restart a process that is fine.
    if settings.metrics_port:
        health_server = HealthServer(settings.metrics_host, settings.metrics_port, health.check).start()
    try:
        return _create_topics_then_work(settings, subscriptions, health)
    finally:
        if health_server is not None:
            health_server.stop()


def _create_topics_then_work(
    settings: StreamSettings, subscriptions: SubscriptionSource, health: StreamHealth
) -> int:
    health.observed = (False, "creating topics", 0.0)
    try:
        ensure_topics(settings, core_topics(settings) + sink_topics(settings, subscriptions()))
    except (KafkaException, TimeoutError) as exc:
        # Without its topics the worker cannot start; the orchestrator restarts it.
        reason = exc.args[0] if isinstance(exc, KafkaException) else "no answer in time"
        LOG.error("cannot start: cannot create topics on %s: %s", settings.kafka_bootstrap_servers, reason)
        return 1
    health.observed = (False, "starting the worker", 0.0)
    app, _runner = build_app(settings, subscriptions, health)
    return _work(settings, app)


def _work(settings: StreamSettings, app: Any) -> int:
    """Run Faust's worker until it stops; its exit status."""
    from faust.worker import Worker

    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False)
    # Faust's start-up spinner writes terminal escape codes to stdout, which is not a terminal here.
    worker.spinner = None
    # mode's worker sets up its own logging handlers; put the JSON lines back.
    worker.on_setup_root_logger = lambda *_a, **_k: setup_logging(settings, "stream")  # type: ignore[method-assign]
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
