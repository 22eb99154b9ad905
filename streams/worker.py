"""`eventfed stream`: the Faust worker that turns raw notifications into events, state and feeds.

Delivery is at-least-once end to end. Faust acks a `take_events` batch once the agent asks for
the next one, and commits acked offsets only after flushing its producer; but a send that
finally fails does not stop that commit. So each batch here is written in three steps, each
waiting for Kafka's acknowledgement, retried with a capped backoff while Kafka refuses:
  1. the canonical events, the subscription feeds and the dead letters;
  2. then the new latest states, to the compacted state topic that is also the Faust table's
     changelog (written to the source record's partition, so state moves with its partition);
  3. only then is the batch given back to Faust to ack and, later, commit.
A crash between 1 and 2 replays the batch: its outputs are written again (duplicates, counted as
replays). A state already written implies its outputs were, so a replayed record that the state
has moved past is stale, not lost.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from bridge.health import HealthServer
from bridge.logs import setup_logging
from bridge.settings import StreamSettings, load
from bridge.topics import TopicSpec, core_topics, ensure_topics
from streams import pipeline
from streams.subscriptions import Subscription, SubscriptionError, load_subscriptions

LOG = logging.getLogger(__name__)

EVENTS = Counter(
    "eventfed_stream_events_total", "Events by outcome, kind and phase", ["outcome", "status", "phase"]
)
DEAD_LETTERED = Counter("eventfed_stream_dead_lettered_total", "Raw records dead-lettered", ["reason"])
DUPLICATES = Counter("eventfed_stream_duplicates_total", "Duplicate notifications dropped", ["reason"])
STALE = Counter("eventfed_stream_stale_total", "Events older than the applied state", ["reason"])
REPLAYED = Counter("eventfed_stream_replayed_total", "Records re-published after a restart")
IGNORED = Counter("eventfed_stream_ignored_total", "Notifications that are not instance status events")
MATCHES = Counter(
    "eventfed_stream_subscription_matches_total", "Events sent per subscription", ["subscription"]
)
BATCH_SECONDS = Histogram("eventfed_stream_processing_seconds", "Time to process and confirm one batch")
BATCH_SIZE = Histogram(
    "eventfed_stream_batch_size", "Records per batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 5000)
)
SEND_RETRIES = Counter("eventfed_stream_send_retries_total", "Batches whose writes were retried")
TOMBSTONES = Counter("eventfed_stream_tombstones_total", "Deleted VMs removed from the state topic")
SUBSCRIPTIONS = Gauge("eventfed_stream_subscriptions", "Subscriptions in force")
SUBSCRIPTION_RELOADS = Counter(
    "eventfed_stream_subscription_reloads_total", "Subscription file reloads", ["result"]
)
STATE_SIZE = Gauge("eventfed_stream_state_vms", "VMs in this worker's state table")


class SubscriptionSource:
    """The subscriptions in force, reloaded when the file's content changes.

    The content hash, not the mtime, decides: a Kubernetes ConfigMap update swaps a symlink.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.current: list[Subscription] = []
        self._digest = ""
        if path is not None:
            self.current = load_subscriptions(path.read_text(encoding="utf-8"), str(path))
            self._digest = hashlib.sha256(path.read_bytes()).hexdigest()
        SUBSCRIPTIONS.set(len(self.current))

    def __call__(self) -> list[Subscription]:
        return self.current

    def reload_if_changed(self) -> bool:
        if self.path is None:
            return False
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            LOG.error("cannot read subscriptions %s: %s; keeping the previous ones", self.path, exc)
            SUBSCRIPTION_RELOADS.labels("error").inc()
            return False
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            subscriptions = load_subscriptions(data.decode("utf-8", errors="replace"), str(self.path))
        except SubscriptionError as exc:
            LOG.error("rejected new subscriptions, keeping the previous ones: %s", exc)
            SUBSCRIPTION_RELOADS.labels("rejected").inc()
            return False
        self.current = subscriptions
        SUBSCRIPTIONS.set(len(subscriptions))
        SUBSCRIPTION_RELOADS.labels("applied").inc()
        LOG.info("subscriptions reloaded: %s", ", ".join(s.name for s in subscriptions) or "(none)")
        return True


class BatchWriter:
    """Sends records through Faust's producer and waits for Kafka's acknowledgements."""

    def __init__(self, app: Any, backoff_max: float = 30.0) -> None:
        self._app = app
        self._backoff_max = backoff_max

    async def write_all(self, outputs: Sequence[pipeline.Output]) -> None:
        pending = list(outputs)
        attempt = 0
        while pending:
            futures = [
                await self._app.producer.send(
                    o.topic, o.key, o.value, o.partition, None, o.headers or None, transactional_id=None
                )
                for o in pending
            ]
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = [o for o, r in zip(pending, results, strict=True) if isinstance(r, BaseException)]
            if not failed:
                return
            first_error = next(r for r in results if isinstance(r, BaseException))
            delay = min(self._backoff_max, 0.5 * 2**attempt) * random.uniform(0.8, 1.0)
            attempt += 1
            SEND_RETRIES.inc()
            LOG.warning(
                "kafka refused %d of %d records (%r); retrying in %.1fs",
                len(failed),
                len(pending),
                first_error,
                delay,
            )
            pending = failed
            await asyncio.sleep(delay)


class StreamRunner:
    """Processes batches of raw events: decide, write outputs, then write state."""

    def __init__(
        self, settings: StreamSettings, app: Any, table: Any, subscriptions: SubscriptionSource
    ) -> None:
        self.settings = settings
        self.table = table
        self.writer = BatchWriter(app)
        confluent = None
        if settings.schema_registry_url:
            from streams.codecs import ConfluentCodec

            confluent = ConfluentCodec(settings.schema_registry_url)
        self.processor = pipeline.Processor(
            pipeline.Topics(events=settings.events_topic, dlq=settings.dlq_topic),
            subscriptions,
            settings.dedup_window_seconds,
            confluent,
        )
        self.processed = 0
        self.health: tuple[bool, str, float] = (False, "starting", 0.0)

    async def handle_batch(self, events: Sequence[Any]) -> None:
        started = time.monotonic()
        now = time.time()
        data = self.table.data
        overlay: dict[bytes, tuple[int, dict[str, Any]]] = {}

        def current_state(key: bytes) -> Mapping[str, Any] | None:
            if key in overlay:
                return overlay[key][1]
            value: Mapping[str, Any] | None = data.get(key)
            return value

        outputs: list[pipeline.Output] = []
        outcomes: list[pipeline.Outcome] = []
        for event in events:
            message = event.message
            source = pipeline.Source(message.topic, message.partition, message.offset)
            outcome = self.processor.process(message.key, message.value, source, current_state, now)
            outputs.extend(outcome.outputs)
            if outcome.new_state is not None and outcome.state_key is not None:
                overlay[outcome.state_key] = (message.partition, outcome.new_state)
            outcomes.append(outcome)
        await self.writer.write_all(outputs)
        for outcome in outcomes:
            self._count(outcome)
        if overlay:
            state_topic = self.settings.state_topic
            await self.writer.write_all(
                [
                    pipeline.Output(state_topic, key, _json_bytes(state), [], partition)
                    for key, (partition, state) in overlay.items()
                ]
            )
            for key, (_, state) in overlay.items():
                data[key] = state
        self.processed += len(events)
        BATCH_SIZE.observe(len(events))
        BATCH_SECONDS.observe(time.monotonic() - started)

    @staticmethod
    def _count(outcome: pipeline.Outcome) -> None:
        event = outcome.event
        if outcome.kind == pipeline.DEAD:
            DEAD_LETTERED.labels(outcome.reason).inc()
            return
        if outcome.kind == pipeline.IGNORED:
            IGNORED.inc()
            return
        assert event is not None
        EVENTS.labels(outcome.kind, event["status"], event["phase"]).inc()
        if outcome.kind == pipeline.DUPLICATE:
            DUPLICATES.labels(outcome.reason).inc()
        elif outcome.kind == pipeline.STALE:
            STALE.labels(outcome.reason).inc()
        elif outcome.kind == pipeline.REPLAYED:
            REPLAYED.inc()
        for name in outcome.matched:
            MATCHES.labels(name).inc()

    async def remove_expired_deletes(self, active_partitions: set[int]) -> int:
        """Tombstone deleted VMs whose retention passed, on the partitions this worker owns."""
        now = time.time()
        data = self.table.data
        expired = [
            (key, state)
            for key, state in list(data.items())
            if pipeline.tombstone_due(state, now, self.settings.tombstone_seconds)
        ]
        outputs = []
        for key, state in expired:
            partition = _partition_of(state)
            if partition is None or partition in active_partitions:
                outputs.append(pipeline.Output(self.settings.state_topic, key, None, [], partition))
        if outputs:
            await self.writer.write_all(outputs)
            for output in outputs:
                data.pop(output.key, None)
            TOMBSTONES.inc(len(outputs))
        STATE_SIZE.set(len(data))
        return len(outputs)


def _json_bytes(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _partition_of(state: Mapping[str, Any]) -> int | None:
    source = (state.get(pipeline.META) or {}).get("source")
    try:
        return int(str(source).rsplit("/", 2)[1])
    except (IndexError, ValueError):
        return None


def faust_broker_settings(settings: StreamSettings) -> dict[str, Any]:
    """Faust's broker URL and credentials for the configured security protocol."""
    import faust
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
    del faust
    return config


def build_app(settings: StreamSettings, subscriptions: SubscriptionSource) -> tuple[Any, StreamRunner]:
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
        producer_acks=-1,
        # Outputs leave in batches: a few milliseconds of linger cost little latency and save
        # most of the per-request overhead at thousands of events per second.
        producer_linger_ms=5,
        producer_max_batch_size=512 * 1024,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        stream_publish_on_commit=False,
        table_standby_replicas=1,
        broker_commit_interval=1.0,
        autodiscover=False,
    )
    raw_topic = app.topic(
        settings.raw_topic, key_serializer="raw", value_serializer="raw", partitions=settings.partitions
    )
    # The compacted state topic is the table's changelog: one topic is both the API's read
    # model and the worker's recovery log, so the two can never disagree.
    state_changelog = app.topic(
        settings.state_topic,
        key_serializer="raw",
        value_serializer="json",
        partitions=settings.partitions,
        compacting=True,
        deleting=False,
    )
    table = app.Table(
        "vm-state",
        default=None,
        partitions=settings.partitions,
        changelog_topic=state_changelog,
        schema=faust.Schema(key_serializer="raw", value_serializer="json"),
    )
    runner = StreamRunner(settings, app, table, subscriptions)

    @app.agent(raw_topic)
    async def process_raw(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_timeout):
            await runner.handle_batch(events)

    @app.timer(interval=settings.subscriptions_reload_seconds)
    async def reload_subscriptions() -> None:
        if subscriptions.reload_if_changed():
            # A new subscription's topic must exist before the first event is sent to it.
            specs = [TopicSpec(s.sink.topic, settings.partitions) for s in subscriptions()]
            await asyncio.get_running_loop().run_in_executor(None, ensure_topics, settings, specs)

    @app.timer(interval=1.0)
    async def observe_health() -> None:
        # Read Faust's state here, on its own event loop; the probe thread only reads the result.
        actives = app.assignor.assigned_actives()
        if app.tables.recovery.in_recovery:  # type: ignore[attr-defined]  # TableManager, not its interface
            runner.health = (False, "recovering state", time.monotonic())
        else:
            runner.health = (True, f"{len(actives)} partitions active", time.monotonic())

    @app.timer(interval=max(1.0, min(60.0, settings.tombstone_seconds / 4)))
    async def expire_deleted() -> None:
        actives = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == settings.raw_topic}
        await runner.remove_expired_deletes(actives)

    return app, runner


def prepare_topics(settings: StreamSettings, subscriptions: SubscriptionSource) -> None:
    specs = core_topics(settings)
    sink_topics = sorted({s.sink.topic for s in subscriptions()})
    specs += [TopicSpec(topic, settings.partitions) for topic in sink_topics]
    ensure_topics(settings, specs)


def readiness_check(runner: StreamRunner) -> Any:
    def check() -> tuple[bool, str]:
        ready, reason, observed_at = runner.health
        if observed_at and time.monotonic() - observed_at > 30:
            return False, "the worker's event loop has not reported for 30s"
        return ready, f"{reason}; processed {runner.processed}"

    return check


def run(args: argparse.Namespace) -> int:
    settings = load(StreamSettings)
    setup_logging(settings, "stream")
    try:
        subscriptions = SubscriptionSource(settings.subscriptions_file)
    except (OSError, SubscriptionError) as exc:
        LOG.error("cannot start: %s", exc)
        return 2
    prepare_topics(settings, subscriptions)
    app, runner = build_app(settings, subscriptions)
    health = None
    if settings.metrics_port:
        health = HealthServer(settings.metrics_host, settings.metrics_port, readiness_check(runner)).start()
    from faust.worker import Worker

    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False)
    # mode's worker sets up its own logging handlers; put the JSON lines back.
    worker.on_setup_root_logger = lambda *_a, **_k: setup_logging(settings, "stream")  # type: ignore[method-assign]
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        if health is not None:
            health.stop()
    return 0
