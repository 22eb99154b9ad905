"""`eventfed stream`: the Faust app that turns raw notifications into events, state and feeds.

This module only wires things together: Faust's app, the raw topic and the state table, the
batch runner (streams.runner) with its producer and consumer-offsets port, the timers, and the
health endpoint. What a batch goes through, and why, is in streams.runner.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Producer

from bridge.deployable import CannotStart, run_deployable
from bridge.kafka_config import KafkaTlsRefused, confirmed_producer_config, consumer_config, ssl_context
from bridge.logs import setup_logging
from bridge.retry import Backoff
from bridge.settings import StreamSettings
from bridge.topic_admin import core_topics, ensure_topics
from streams import pipeline
from streams.batching import company_batches
from streams.codecs import CodecError
from streams.faust_internals import FaustConsumerOffsets, fetch_waiting_for_company, missing_internals
from streams.fleet_merge import FleetMerger
from streams.range_reader import KafkaRangeReader
from streams.registration import Registrar, SchemaIds, avro_topics
from streams.runner import COMMIT_INTERVAL_SECONDS, BatchRunner, BatchWriter
from streams.subscription_source import SubscriptionSource
from streams.subscriptions import Subscription, SubscriptionError
from streams.sweeps import FleetTopic
from streams.topics_command import sink_topics
from streams.worker_timers import WorkerTimers, register_timers, subscription_reloader

if TYPE_CHECKING:
    import faust

LOG = logging.getLogger(__name__)


def faust_broker_settings(settings: StreamSettings) -> dict[str, Any]:
    """Faust's broker URL and credentials for the configured security protocol; TLS (CA, client
    certificate) comes from the one Kafka configuration module, as for the librdkafka clients."""
    from faust.auth import SASLCredentials, SSLCredentials

    servers = ";".join(f"kafka://{s.strip()}" for s in settings.kafka_bootstrap_servers.split(","))
    config: dict[str, Any] = {"broker": servers}
    protocol = settings.kafka_security_protocol
    context = ssl_context(settings)
    if protocol.startswith("SASL"):
        assert settings.kafka_sasl_password is not None
        config["broker_credentials"] = SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    elif context is not None:
        config["broker_credentials"] = SSLCredentials(context)
    return config


class StreamHealth:
    """What the probe thread reports: observed on Faust's event loop, read from another thread."""

    def __init__(self) -> None:
        self.observed: tuple[bool, str, float] = (False, "starting", 0.0)
        self.processed = lambda: 0
        # Set while something the operator asked for cannot be done (new subscriptions whose
        # topics cannot be created or registered): not ready, whatever Faust's state.
        self.problem: str | None = None

    def check(self) -> tuple[bool, str]:
        problem = self.problem
        if problem is not None:
            return False, f"{problem}; processed {self.processed()}"
        ready, reason, observed_at = self.observed
        if observed_at and time.monotonic() - observed_at > 30:
            return False, "the worker's event loop has not reported for 30s"
        return ready, f"{reason}; processed {self.processed()}"


def build_processor(
    settings: StreamSettings, subscriptions: SubscriptionSource, schema_ids: SchemaIds | None = None
) -> pipeline.Processor:
    return pipeline.Processor(
        pipeline.Topics(events=settings.events_topic, dlq=settings.dlq_topic),
        subscriptions,
        settings.dedup_window_seconds,
        schema_ids,
        settings.stuck_after,
        settings.measurement_interval_seconds,
        settings.measurement_grace_seconds,
    )


def prepare_sinks(
    settings: StreamSettings, subscriptions: list[Subscription], registrar: Registrar | None
) -> None:
    """Make the topics of these subscriptions ready to be written: created, and with a registry,
    the event schema registered under each Avro topic's subject. Blocking; raises KafkaException,
    TimeoutError or RegistrationError."""
    ensure_topics(settings, sink_topics(settings, subscriptions))
    if registrar is not None:
        registrar.register(avro_topics(settings.events_topic, subscriptions))


# A metadata request for the worker's few topics is cheap; a worker idle for minutes is not.
METADATA_MAX_AGE_MS = 5_000


def faust_app(settings: StreamSettings) -> faust.App:
    """Faust's app for the worker: its broker, its consumer's timings, and nothing of Faust's own
    producing or committing (outputs go through BatchWriter, offsets through BatchRunner)."""
    import faust

    return faust.App(
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
        # The group leader assigns no partition of a subscribed topic its metadata lacks (right
        # after a broker restart, or a topic re-created by an operator), and only a metadata refresh
        # showing the topic back makes it rebalance: refresh every few seconds, not every 5 minutes.
        consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.session_timeout_seconds / 4,
        autodiscover=False,
    )


def state_table(app: faust.App, settings: StreamSettings) -> Any:
    """The table of every VM's latest state, whose changelog is the compacted state topic: one
    topic is both the API's read model and the worker's recovery log, so the two can never
    disagree."""
    import faust

    # acks=False as on Faust's own changelogs: the table reads it only to recover, so Faust's
    # check for stalled streams must not count it as a stream (it would log an error per partition
    # every few seconds once the worker is five minutes old and the table has been written).
    changelog = app.topic(
        settings.state_topic,
        key_serializer="raw",
        value_serializer="json",
        partitions=settings.partitions,
        compacting=True,
        deleting=False,
        acks=False,
    )
    return app.Table(
        "vm-state",
        default=None,
        partitions=settings.partitions,
        changelog_topic=changelog,
        schema=faust.Schema(key_serializer="raw", value_serializer="json"),
    )


def build_runner(
    settings: StreamSettings, app: Any, table: Any, processor: pipeline.Processor
) -> BatchRunner:
    """The batch runner of `app`, over its state `table`, with a producer and a range reader of
    its own."""
    writer = BatchWriter(
        Producer(confirmed_producer_config(settings, "stream", settings.delivery_timeout)),
        delivery_timeout=settings.delivery_timeout,
        # States are confirmed before each commit: until then they wait for company, so a quiet
        # cloud's states go in a request per partition per commit, not one per batch.
        state_producer=Producer(
            confirmed_producer_config(
                settings, "stream-state", settings.delivery_timeout, linger=COMMIT_INTERVAL_SECONDS
            )
        ),
    )
    # Reads records the Faust consumer fetched but never handed over, by offset (holes are rare).
    reader = KafkaRangeReader(consumer_config(settings, "stream-range-reader", group_id=None))
    return BatchRunner(
        processor,
        writer,
        FaustConsumerOffsets(app),
        reader,
        table.data,
        settings.state_topic,
        current_generation=lambda: app.consumer_generation_id,
        max_in_flight=settings.max_batches_in_flight,
    )


def build_app(
    settings: StreamSettings,
    subscriptions: SubscriptionSource,
    health: StreamHealth,
    registrar: Registrar | None = None,
) -> tuple[Any, BatchRunner]:
    app = faust_app(settings)
    fetch_waiting_for_company(app, settings.fetch_wait_ms)
    # acks=False: Faust neither tracks nor commits these offsets; the BatchRunner does.
    raw_topic = app.topic(
        settings.raw_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        acks=False,
    )
    schema_ids = registrar.ids if registrar is not None else None
    runner = build_runner(
        settings, app, state_table(app, settings), build_processor(settings, subscriptions, schema_ids)
    )
    health.processed = lambda: runner.processed

    @app.agent(raw_topic)
    async def process_raw(stream: Any) -> None:
        # Not Faust's take_events, which wakes on a fixed beat even when nothing comes
        # (streams.batching).
        async for events in company_batches(stream.events(), settings.batch_size, settings.batch_timeout):
            await runner.handle_batch([event.message for event in events])

    merger = wire_fleet_merge(app, settings, runner)

    async def wait_for_writes_on_revoke(_app: Any, *_args: Any, **_kwargs: Any) -> None:
        # Called inside the rebalance, before this worker rejoins: the next owner of a partition
        # starts only after this worker's last write and commit for it.
        await runner.on_partitions_revoked()

    # mode's stub wants a keyword-only `signal` parameter; the runtime passes it in **kwargs.
    app.on_partitions_revoked.connect(wait_for_writes_on_revoke)  # type: ignore[arg-type]
    register_timers(
        app,
        WorkerTimers(
            app,
            settings,
            runner,
            health,
            subscription_reloader(settings, subscriptions, health, registrar),
            merger,
        ),
    )
    return app, runner


def wire_fleet_merge(app: Any, settings: StreamSettings, runner: BatchRunner) -> FleetMerger:
    """The fleet figures' parts topic, the merge's table (changelogged under the app's name, as
    Faust's own topics are) and the agent that merges (streams.fleet_merge). The fleet-parts
    topic has the raw topic's partition count, so Faust assigns both alike."""
    runner.sweeps.fleet = FleetTopic(settings.fleet_parts_topic, settings.partitions, settings.partitions)
    parts_topic = app.topic(
        settings.fleet_parts_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    import faust

    books = app.Table(
        "fleet-merge",
        default=None,
        partitions=settings.partitions,
        # key_type gives the changelog its raw keys (the schema alone would leave them JSON on
        # recovery, where "0/1700000000" is not a document).
        key_type=bytes,
        schema=faust.Schema(key_serializer="raw", value_serializer="json"),
    )

    merger = FleetMerger(
        books, runner.processor.fleet_outputs, runner.writer.write_all, settings.measurement_grace_seconds
    )

    @app.agent(parts_topic)
    async def merge_fleet(stream: Any) -> None:
        async for event in stream.events():
            await merger.handle(event.message.partition, event.value, time.time())

    return merger


class StreamDeployable:
    """`eventfed stream` in the deployable skeleton (bridge.deployable): create the topics and
    register the schemas, then run Faust's worker loop, which handles SIGTERM and SIGINT itself
    (it stops its agents after the batch in hand, then commits what was written)."""

    name = "stream worker"
    handles_signals = True

    def __init__(self, settings: StreamSettings) -> None:
        missing = missing_internals()
        if missing:
            LOG.error(
                "cannot start: this faust-streaming lacks what eventfed relies on: %s", ", ".join(missing)
            )
            raise CannotStart(2)
        try:
            self.subscriptions = SubscriptionSource(settings.subscriptions_file)
        except (OSError, SubscriptionError) as exc:
            LOG.error("cannot start: %s", exc)
            raise CannotStart(2) from exc
        self.settings = settings
        self.health = StreamHealth()
        self.app: Any = None
        self.runner: BatchRunner | None = None

    def readiness(self) -> tuple[bool, str]:
        return self.health.check()

    def start(self) -> int | None:
        settings, subscriptions, health = self.settings, self.subscriptions, self.health
        if not create_topics(settings, subscriptions, health):
            return 1
        registrar = None
        if settings.schema_registry_url:
            registrar = _register_schemas(settings, subscriptions, health)
            if registrar is None:
                return 1
        health.observed = (False, "starting the worker", 0.0)
        self.app, self.runner = build_app(settings, subscriptions, health, registrar)
        return None

    def work(self) -> int:
        return _work(self.settings, self.app)

    def request_stop(self, signum: int) -> None:
        # Not called: handles_signals, Faust's worker stops itself on a signal.
        raise NotImplementedError

    def drain(self) -> None:
        if self.runner is not None:
            self.runner.reader.close()
            left = self.runner.writer.flush_staged(self.settings.delivery_timeout)
            if left:
                LOG.warning("%d state records not sent at shutdown; the next owner writes them", left)


def run(args: argparse.Namespace) -> int:
    return run_deployable("stream", StreamSettings, StreamDeployable)


def create_topics(settings: StreamSettings, subscriptions: SubscriptionSource, health: StreamHealth) -> bool:
    """The worker's topics created (or found), retried with backoff while Kafka does not answer,
    for up to kafka_start_timeout seconds; False (logged) when they could not be."""
    deadline = time.monotonic() + settings.kafka_start_timeout
    backoff = Backoff(initial=1.0, maximum=15.0)
    while True:
        health.observed = (False, "creating topics", 0.0)
        try:
            ensure_topics(settings, core_topics(settings) + sink_topics(settings, subscriptions()))
            return True
        except KafkaTlsRefused as exc:
            # A refused certificate is configuration: trying again cannot mend it.
            LOG.error("cannot start: %s", exc.args[0])
            return False
        except (KafkaException, TimeoutError) as exc:
            error = exc.args[0] if isinstance(exc, KafkaException) else None
            reason = error.str() if isinstance(error, KafkaError) else "no answer in time"
        where = settings.kafka_bootstrap_servers
        delay = backoff.next_delay()
        if time.monotonic() + delay > deadline:
            LOG.error(
                "cannot start: cannot create topics on %s within %.0fs: %s",
                where,
                settings.kafka_start_timeout,
                reason,
            )
            return False
        LOG.warning("cannot create topics on %s (%s); trying again in %.1fs", where, reason, delay)
        health.observed = (False, f"waiting for Kafka at {where}: {reason}", 0.0)
        time.sleep(delay)


def _register_schemas(
    settings: StreamSettings, subscriptions: SubscriptionSource, health: StreamHealth
) -> Registrar | None:
    """The event schema registered under the subject of every Avro topic in force, retried with
    backoff for up to schema_registry_timeout seconds; None (logged) when it could not be."""
    from streams.codecs import ConfluentCodec

    assert settings.schema_registry_url is not None
    health.observed = (False, "registering schemas", 0.0)
    try:
        registrar = Registrar(ConfluentCodec(settings.schema_registry_url))
        registrar.register_within(
            avro_topics(settings.events_topic, subscriptions()),
            settings.schema_registry_timeout,
            on_retry=lambda reason: setattr(health, "observed", (False, reason, 0.0)),
        )
    except (CodecError, ValueError) as exc:
        # RegistrationError is a CodecError; the client raises ValueError for a URL it cannot use.
        LOG.error("cannot start: %s", exc)
        return None
    return registrar


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
