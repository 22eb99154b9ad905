"""`eventfed stream`: the Faust worker that turns raw notifications into events, state and feeds.

Delivery is at-least-once end to end, and the worker commits the raw topic's offsets itself.
Faust's own acking is switched off for that topic, because it can commit what was never written:
`take_events` acks a batch in a `finally`, so a batch abandoned mid-write (shutdown, rebalance)
is acked; records fetched before a rebalance and skipped after it are acked unprocessed; and a
send that finally failed does not stop Faust's commit. Here each batch goes in four steps, each
waiting for Kafka's acknowledgement, the writes retried with a capped backoff while Kafka refuses:
  1. the canonical events, the subscription feeds and the dead letters;
  2. then the new latest states, to the compacted state topic that is also the Faust table's
     changelog (written to the source record's partition, so state moves with its partition);
  3. then the batch's offsets may be committed: every 200 ms and at a rebalance, from the
     consumer's own thread;
  4. a rebalance waits for the batch in flight, and a batch fetched before the rebalance is
     dropped uncommitted (it is fetched again by whoever owns its partition now), so a worker
     that lost a partition never writes its state after the new owner has started.
Records must also arrive without holes: Faust can drop records fetched while it seeks back at a
rebalance. `streams.offsets.OffsetLedger` checks every record against the next offset expected
from the committed one; on a hole the worker seeks back instead of committing past it.
A crash between 1 and 3 replays the batch: its outputs are written again (duplicates, counted as
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from prometheus_client import Counter, Gauge, Histogram

from bridge.health import HealthServer
from bridge.kafka_config import producer_config
from bridge.kafka_delivery import ProduceRequest, produce_and_confirm
from bridge.logs import setup_logging
from bridge.settings import StreamSettings, load
from bridge.topics import TopicSpec, core_topics, ensure_topics
from streams import pipeline
from streams.offsets import ACCEPT, GAP, OffsetLedger
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
COMMIT_FAILURES = Counter(
    "eventfed_stream_commit_failures_total", "Offset commits refused (the records will be replayed)"
)
REDELIVERED = Counter(
    "eventfed_stream_redelivered_total", "Records fetched again after a seek, handled already"
)
GAP_SEEKS = Counter("eventfed_stream_gap_seeks_total", "Seeks back to records that did not reach the worker")
LOST_TO_RETENTION = Counter(
    "eventfed_stream_lost_to_retention_total", "Raw records deleted by retention before they were handled"
)
DROPPED_AFTER_REBALANCE = Counter(
    "eventfed_stream_dropped_after_rebalance_total",
    "Records fetched before a rebalance and left for the partition's new owner",
)
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
    """Produces records with librdkafka and waits until Kafka has acknowledged every one.

    Produce and flush run on one thread of their own: librdkafka works in C and releases the GIL
    while it waits, so the event loop (Faust's fetching and timers) keeps running meanwhile, and
    a send costs a few microseconds instead of an awaited future per record.
    """

    def __init__(self, producer: Any, delivery_timeout: float = 30.0, backoff_max: float = 30.0) -> None:
        self._producer = producer
        self._delivery_timeout = delivery_timeout
        self._backoff_max = backoff_max
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="eventfed-produce")

    async def write_all(self, outputs: Sequence[pipeline.Output]) -> None:
        pending = list(outputs)
        attempt = 0
        loop = asyncio.get_running_loop()
        while pending:
            failed, first_error = await loop.run_in_executor(self._thread, self._produce_and_confirm, pending)
            if not failed:
                return
            delay = min(self._backoff_max, 0.5 * 2**attempt) * random.uniform(0.8, 1.0)
            attempt += 1
            SEND_RETRIES.inc()
            LOG.warning(
                "kafka refused %d of %d records (%s); retrying in %.1fs",
                len(failed),
                len(pending),
                first_error,
                delay,
            )
            pending = failed
            await asyncio.sleep(delay)

    def _produce_and_confirm(self, outputs: Sequence[pipeline.Output]) -> tuple[list[pipeline.Output], str]:
        """The outputs Kafka refused or did not confirm, in their order, and the first error."""
        requests = [ProduceRequest(o.topic, o.key, o.value, o.headers, o.partition) for o in outputs]
        delivery = produce_and_confirm(self._producer, requests, self._delivery_timeout)
        return [outputs[i] for i in delivery.failed], delivery.first_error


# Faust runs its aiokafka consumer on a thread of its own, and aiokafka is not thread-safe: these
# run there, through `call_thread`.


def _aiokafka_tp(tp: Any) -> Any:
    from aiokafka.structs import TopicPartition

    return TopicPartition(tp.topic, tp.partition)


async def _commit_on_consumer_thread(thread: Any, offsets: Mapping[Any, int]) -> int:
    from aiokafka.structs import OffsetAndMetadata

    consumer = thread._ensure_consumer()
    assigned = consumer.assignment()
    committable = {
        _aiokafka_tp(tp): OffsetAndMetadata(offset, "")
        for tp, offset in offsets.items()
        if _aiokafka_tp(tp) in assigned
    }
    if committable:
        await consumer.commit(committable)
        # Faust's livelock check reads this; it is updated by Faust's own commits only.
        now = time.monotonic()
        thread.tp_last_committed_at.update({tp: now for tp in offsets})
    return len(committable)


async def _starts_on_consumer_thread(thread: Any, partitions: set[Any]) -> dict[Any, int]:
    consumer = thread._ensure_consumer()
    starts: dict[Any, int] = {}
    never_committed = []
    for tp in partitions:
        committed = await consumer.committed(_aiokafka_tp(tp))
        if committed is None:
            never_committed.append(tp)
        else:
            starts[tp] = committed
    if never_committed:
        # No commit yet: the group starts at the log start (auto.offset.reset=earliest).
        starts.update(await _log_starts_on_consumer_thread(thread, set(never_committed)))
    return starts


async def _log_starts_on_consumer_thread(thread: Any, partitions: set[Any]) -> dict[Any, int]:
    consumer = thread._ensure_consumer()
    by_key = {_aiokafka_tp(tp): tp for tp in partitions}
    beginnings = await consumer.beginning_offsets(list(by_key))
    return {by_key[key]: offset for key, offset in beginnings.items()}


async def _seek_on_consumer_thread(thread: Any, tp: Any, offset: int) -> None:
    thread._ensure_consumer().seek(_aiokafka_tp(tp), offset)


class ConsumerOffsets:
    """Committed offsets, log starts and seeks of the raw topic, on Faust's consumer."""

    def __init__(self, app: Any, timeout: float = 60.0) -> None:
        self._app = app
        self._timeout = timeout

    async def _call(self, function: Any, *args: Any) -> Any:
        thread = self._app.consumer._thread
        return await asyncio.wait_for(thread.call_thread(function, thread, *args), self._timeout)

    async def commit(self, offsets: Mapping[Any, int]) -> bool:
        if not offsets:
            return True
        try:
            committed = await self._call(_commit_on_consumer_thread, dict(offsets))
        except Exception as exc:  # any refusal means the same: the batch is replayed
            COMMIT_FAILURES.inc()
            LOG.warning("offset commit refused, the batch will be replayed if needed: %r", exc)
            return False
        if not committed:
            COMMIT_FAILURES.inc()
            LOG.info("offset commit skipped: the partitions are no longer assigned")
        return bool(committed)

    async def starts(self, partitions: set[Any]) -> dict[Any, int]:
        result: dict[Any, int] = await self._call(_starts_on_consumer_thread, partitions)
        return result

    async def log_starts(self, partitions: set[Any]) -> dict[Any, int]:
        result: dict[Any, int] = await self._call(_log_starts_on_consumer_thread, partitions)
        return result

    async def seek(self, tp: Any, offset: int) -> None:
        await self._call(_seek_on_consumer_thread, tp, offset)
        # Faust drops fetched records below its read offset; it must follow the seek back.
        self._app.consumer._read_offset[tp] = offset or None


class StreamRunner:
    """Processes batches of raw events: decide, write outputs, write state, commit."""

    def __init__(
        self, settings: StreamSettings, app: Any, table: Any, subscriptions: SubscriptionSource
    ) -> None:
        self.settings = settings
        self.app = app
        self.table = table
        self.writer = BatchWriter(
            Producer(producer_config(settings, "stream", **{"linger.ms": 5})),
            delivery_timeout=30.0,
        )
        self.consumer_offsets = ConsumerOffsets(app)
        self.ledger = OffsetLedger()
        # Offsets whose records are written, waiting for the next commit (every 200 ms and at a
        # rebalance): a commit round trip per batch would hold up the next batch.
        self.uncommitted: dict[Any, int] = {}
        # Writes to Kafka happen under this lock; a rebalance takes it to wait for them.
        self.write_lock = asyncio.Lock()
        # The consumer generation whose partitions are being revoked. Its records are fetched
        # again after the new assignment (Faust seeks to the committed offsets), so they are
        # left alone; records of the current generation are never skipped, since nothing would
        # fetch them again.
        self.revoked_generation: int | None = None
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
        async with self.write_lock:
            current = [e for e in events if self.accepts(e.message.generation_id)]
            if len(current) < len(events):
                DROPPED_AFTER_REBALANCE.inc(len(events) - len(current))
                LOG.info("left %d records fetched before a rebalance", len(events) - len(current))
            if not current or not await self._know_starts({e.message.tp for e in current}):
                return
            accepted = []
            gaps: dict[Any, int] = {}
            for event in current:
                message = event.message
                verdict = self.ledger.admit(message.tp, message.offset)
                if verdict == ACCEPT:
                    accepted.append(event)
                elif verdict == GAP:
                    gaps[message.tp] = max(message.offset, gaps.get(message.tp, -1))
                else:
                    REDELIVERED.inc()
            if accepted:
                await self._write_batch(accepted)
                tps = {e.message.tp for e in accepted}
                self.uncommitted.update(self.ledger.commit_offsets(tps))
            for tp, last_dropped in gaps.items():
                # A dropped record below the expected offset came again later in this batch.
                if last_dropped >= self.ledger.expected(tp):
                    await self._seek_back(tp, last_dropped)

    async def _know_starts(self, partitions: set[Any]) -> bool:
        """Load where newly assigned partitions start; False if a rebalance came first."""
        unknown = self.ledger.unknown(partitions)
        attempt = 0
        while unknown:
            generation = self.app.consumer_generation_id
            try:
                self.ledger.start(await self.consumer_offsets.starts(unknown))
                return True
            except Exception as exc:
                delay = min(30.0, 0.5 * 2**attempt)
                attempt += 1
                LOG.warning("cannot read committed offsets (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
            if not self.accepts(generation):
                return False
        return True

    async def _seek_back(self, tp: Any, last_dropped: int) -> None:
        expected = self.ledger.expected(tp)
        pending = self.ledger.pending_seek(tp)
        if pending is not None and pending.offset == expected:
            return  # records fetched before that seek are still draining; see retry_stalled_seeks
        target = await self._first_available(tp, expected)
        LOG.warning(
            "records from %d of %s did not reach the worker (record %d did); fetching them again",
            target,
            tp,
            last_dropped,
        )
        await self._seek(tp, target)

    async def _first_available(self, tp: Any, expected: int) -> int:
        """`expected`, unless retention deleted it meanwhile: then the log start, counted as lost."""
        try:
            log_start = (await self.consumer_offsets.log_starts({tp})).get(tp)
        except Exception as exc:
            LOG.warning("cannot read the log start of %s: %r", tp, exc)
            log_start = None
        if log_start is not None and log_start > expected:
            LOST_TO_RETENTION.inc(log_start - expected)
            LOG.error(
                "records %d..%d of %s were deleted by retention before the worker handled them",
                expected,
                log_start - 1,
                tp,
            )
            return log_start
        return expected

    async def _seek(self, tp: Any, target: int) -> None:
        try:
            await self.consumer_offsets.seek(tp, target)
        except Exception as exc:
            LOG.warning("seek of %s to %d failed (%r); retrying", tp, target, exc)
        GAP_SEEKS.inc()
        self.ledger.seeking(tp, target, time.monotonic())

    async def retry_stalled_seeks(self, after: float = 2.0) -> None:
        """Seek again where the record sought has not come: Faust can still drop it, when records
        fetched before the seek move its read position past it."""
        async with self.write_lock:
            now = time.monotonic()
            for tp, seek in self.ledger.pending_seeks():
                if now - seek.since >= after and self.accepts(self.app.consumer_generation_id):
                    LOG.info("record %d of %s has not come since the seek; seeking again", seek.offset, tp)
                    await self._seek(tp, await self._first_available(tp, seek.offset))

    def accepts(self, generation: int | None) -> bool:
        current = self.app.consumer_generation_id
        return generation == current and current != self.revoked_generation

    async def on_partitions_revoked(self) -> None:
        """Nothing more is written until the new assignment; returns once the batch in flight
        is written and committed."""
        self.revoked_generation = self.app.consumer_generation_id
        async with self.write_lock:
            await self.commit_written()
            self.ledger.forget_all()
            self.uncommitted.clear()

    async def commit_written(self) -> None:
        """Commit the offsets of every batch written so far. Only written batches are in
        `uncommitted`, so this needs no lock; a refused commit is tried again next time unless
        a later batch of that partition has superseded it."""
        offsets, self.uncommitted = self.uncommitted, {}
        if offsets and not await self.consumer_offsets.commit(offsets):
            for tp, offset in offsets.items():
                self.uncommitted.setdefault(tp, offset)

    async def _write_batch(self, events: Sequence[Any]) -> None:
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
            async with self.write_lock:
                if not self.accepts(self.app.consumer_generation_id):
                    return 0
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
    # acks=False: Faust neither tracks nor commits these offsets; OffsetCommitter does.
    raw_topic = app.topic(
        settings.raw_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        acks=False,
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
            specs = [TopicSpec(s.sink.topic, settings.partitions) for s in subscriptions()]
            await asyncio.get_running_loop().run_in_executor(None, ensure_topics, settings, specs)

    @app.timer(interval=0.2)
    async def commit_written() -> None:
        await runner.commit_written()

    @app.timer(interval=1.0)
    async def retry_stalled_seeks() -> None:
        await runner.retry_stalled_seeks()

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
