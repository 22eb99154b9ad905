"""`eventfed poll`: one VIM's servers, read from Nova's API on an interval, into the raw topic.

A cycle lists the servers changed since the high-water mark less the overlap window (deleted
ones included), page by page; each page's snapshots are written to the raw topic, and only when
Kafka has acknowledged all of them does the next page follow. When the whole cycle is written the
high-water mark moves to the time Nova's API gave at the cycle's start, and is saved in the
checkpoint topic. A cycle that fails (Nova down, Kafka refusing) leaves the mark where it was: the
next try, after a capped backoff, reads the same window again, so nothing is missed; what was
already written is written again with the same message ids and dropped by the stream worker.

The first cycle of a VIM that has no checkpoint lists every live server, then the changes of the
last POLL_LOOKBACK_SECONDS (the deleted ones among them). Credentials that Nova or Keystone refuse
stop the process with one error line and exit status 3: no retry cures them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from confluent_kafka import Producer
from prometheus_client import Counter, Gauge, Histogram

from bridge.deployable import run_deployable
from bridge.kafka_config import confirmed_producer_config
from bridge.poller.checkpoint import CheckpointError, KafkaCheckpoints, checkpoint_topic
from bridge.poller.nova import Listing, NovaAuthError, NovaServers, NovaUnavailable, Page, build_client
from bridge.poller.snapshot import changes_since, message_id, next_high_water, parse_api_time, polled_record
from bridge.raw_writer import KafkaBatchWriter
from bridge.retry import Backoff
from bridge.settings import PollerSettings, VimPollerSettings
from bridge.topic_admin import core_topics, ensure_topics
from bridge.vims import single_vim
from schemas.raw import DeadLetter, RawRecord

LOG = logging.getLogger(__name__)

EXIT_AUTH = 3

CYCLES = Counter("eventfed_poll_cycles_total", "Polling cycles by outcome", ["vim", "outcome"])
API_CALLS = Counter("eventfed_poll_api_calls_total", "Requests to Nova's servers API", ["vim"])
SERVERS_READ = Counter("eventfed_poll_servers_read_total", "Server snapshots read from Nova's API", ["vim"])
WRITTEN = Counter(
    "eventfed_poll_records_written_total", "Snapshots Kafka acknowledged on the raw topic", ["vim"]
)
UNCHANGED = Counter(
    "eventfed_poll_unchanged_total",
    "Snapshots read again unchanged (overlap window) and not written",
    ["vim"],
)
DEAD_LETTERED = Counter(
    "eventfed_poll_dead_lettered_total", "Snapshots written to the dead-letter topic", ["vim"]
)
CYCLE_SECONDS = Histogram(
    "eventfed_poll_cycle_duration_seconds",
    "Time of one successful cycle",
    ["vim"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
HIGH_WATER = Gauge(
    "eventfed_poll_high_water_timestamp_seconds", "The high-water mark, on Nova's clock", ["vim"]
)

# The metrics labelled by VIM alone; forget_vim drops a VIM's series when it is no longer served.
_BY_VIM = (API_CALLS, SERVERS_READ, WRITTEN, UNCHANGED, DEAD_LETTERED, CYCLE_SECONDS, HIGH_WATER)
CYCLE_OUTCOMES = ("ok", "failed", "auth_failed")


def forget_vim(vim: str) -> None:
    """Drop the series of a VIM this process no longer polls."""
    for metric in _BY_VIM:
        with contextlib.suppress(KeyError):
            metric.remove(vim)
    for outcome in CYCLE_OUTCOMES:
        with contextlib.suppress(KeyError):
            CYCLES.remove(vim, outcome)


class ServerPages(Protocol):
    def pages(self, since: datetime | None, listing: Listing) -> Any: ...


class Writer(Protocol):
    def write(self, records: Any) -> Any: ...


class Checkpoints(Protocol):
    def read(self) -> datetime | None: ...

    def write(self, high_water: datetime) -> None: ...


class KafkaRefused(Exception):
    """Kafka did not acknowledge every record of a page."""


@dataclass
class CycleResult:
    full: bool
    since: datetime | None
    calls: int
    servers: int
    written: int
    unchanged: int
    seconds: float
    high_water: datetime | None


class Poller:
    """One VIM's polling cycles; Nova, Kafka and the checkpoint store are passed in."""

    def __init__(
        self,
        settings: VimPollerSettings,
        nova: ServerPages,
        writer: Writer,
        checkpoints: Checkpoints,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._nova = nova
        self._writer = writer
        self._checkpoints = checkpoints
        self._clock = clock
        self.high_water: datetime | None = None
        self._checkpoint_read = False
        # server id -> (message id, updated) of the last snapshot Kafka took: a server read again
        # unchanged in the overlap window is not written again. Forgotten once out of the window.
        self._sent: dict[str, tuple[str, datetime | None]] = {}

    def cycle(self) -> CycleResult:
        started = time.monotonic()
        if not self._checkpoint_read:
            self.high_water = self._checkpoints.read()
            self._checkpoint_read = True
            LOG.info(
                "checkpoint of vim %s: %s",
                self._settings.vim_id,
                self.high_water.isoformat() if self.high_water else "none, first cycle lists every server",
            )
        listings: list[tuple[datetime | None, Listing]] = []
        if self.high_water is None:
            listings.append((None, Listing()))
            if self._settings.poll_lookback_seconds > 0:
                lookback = timedelta(seconds=self._settings.poll_lookback_seconds)
                listings.append((self._clock() - lookback, Listing()))
        else:
            listings.append((changes_since(self.high_water, self._settings.poll_overlap_seconds), Listing()))
        newest: datetime | None = None
        written = unchanged = 0
        for since, listing in listings:
            for page in self._nova.pages(since, listing):
                page_written, page_unchanged, page_newest = self._write_page(page)
                written += page_written
                unchanged += page_unchanged
                if page_newest is not None and (newest is None or page_newest > newest):
                    newest = page_newest
        first_date = listings[0][1].first_date
        high_water = next_high_water(self.high_water, first_date, newest)
        if high_water is not None and high_water != self.high_water:
            self._checkpoints.write(high_water)
        self.high_water = high_water
        self._forget_outside_window()
        return CycleResult(
            full=listings[0][0] is None,
            since=listings[0][0],
            calls=sum(listing.calls for _, listing in listings),
            servers=sum(listing.servers for _, listing in listings),
            written=written,
            unchanged=unchanged,
            seconds=time.monotonic() - started,
            high_water=high_water,
        )

    def _write_page(self, page: Page) -> tuple[int, int, datetime | None]:
        received_at = self._clock()
        records: list[RawRecord | DeadLetter] = []
        pending: dict[str, tuple[str, datetime | None]] = {}
        newest: datetime | None = None
        unchanged = 0
        for server in page.servers:
            server_id = server.get("id")
            if not isinstance(server_id, str) or not server_id:
                continue
            updated = parse_api_time(server.get("updated"))
            if updated is not None and (newest is None or updated > newest):
                newest = updated
            snapshot_id = message_id(self._settings.vim_id, server)
            if self._sent.get(server_id, ("", None))[0] == snapshot_id:
                unchanged += 1
                continue
            records.append(
                polled_record(self._settings.vim_id, server, received_at, self._settings.max_message_bytes)
            )
            pending[server_id] = (snapshot_id, updated)
        vim = self._settings.vim_id
        SERVERS_READ.labels(vim).inc(len(page.servers))
        API_CALLS.labels(vim).inc()
        UNCHANGED.labels(vim).inc(unchanged)
        if not records:
            return 0, unchanged, newest
        result = self._writer.write(records)
        if result.failed:
            raise KafkaRefused(
                f"Kafka refused {len(result.failed)} of {len(records)} records: {result.first_error}"
            )
        WRITTEN.labels(vim).inc(result.written)
        DEAD_LETTERED.labels(vim).inc(result.dead_lettered)
        self._sent.update(pending)
        return result.written + result.dead_lettered, unchanged, newest

    def _forget_outside_window(self) -> None:
        if self.high_water is None:
            return
        horizon = changes_since(self.high_water, self._settings.poll_overlap_seconds)
        for server_id in [
            s for s, (_, updated) in self._sent.items() if updated is None or updated < horizon
        ]:
            del self._sent[server_id]


class PollState:
    """The health endpoint's readiness: ready once a cycle has succeeded and while the last one did."""

    def __init__(self) -> None:
        self.ready = False
        self.reason = "starting"

    def __call__(self) -> tuple[bool, str]:
        return self.ready, self.reason


def poll_until_stopped(
    settings: VimPollerSettings,
    poller: Poller,
    state: PollState,
    stop: threading.Event,
    backoff: Backoff,
) -> int:
    """Cycles every POLL_INTERVAL until `stop`; retries a failed cycle after the backoff."""
    state.reason = "first cycle"
    while not stop.is_set():
        started = time.monotonic()
        try:
            result = poller.cycle()
        except NovaAuthError as exc:
            CYCLES.labels(settings.vim_id, "auth_failed").inc()
            state.ready, state.reason = False, str(exc)
            LOG.error(
                "vim %s: %s; check EVENTFED_NOVA_TOKEN or EVENTFED_OS_* (stopping)", settings.vim_id, exc
            )
            return EXIT_AUTH
        except (NovaUnavailable, KafkaRefused, CheckpointError) as exc:
            CYCLES.labels(settings.vim_id, "failed").inc()
            delay = backoff.next_delay()
            state.ready, state.reason = False, str(exc)
            LOG.warning(
                "vim %s: cycle failed (attempt %d), retrying in %.1f s from the same high-water mark: %s",
                settings.vim_id,
                backoff.attempts,
                delay,
                exc,
            )
            stop.wait(delay)
            continue
        backoff.reset()
        CYCLES.labels(settings.vim_id, "ok").inc()
        CYCLE_SECONDS.labels(settings.vim_id).observe(result.seconds)
        if result.high_water is not None:
            HIGH_WATER.labels(settings.vim_id).set(result.high_water.timestamp())
        state.ready, state.reason = True, "last cycle succeeded"
        LOG.info(
            "vim %s: %s cycle since %s: %d calls, %d servers, %d written, %d unchanged, %.3f s",
            settings.vim_id,
            "full" if result.full else "incremental",
            result.since.isoformat() if result.since else "-",
            result.calls,
            result.servers,
            result.written,
            result.unchanged,
            result.seconds,
        )
        stop.wait(max(0.0, settings.poll_interval - (time.monotonic() - started)))
    return 0


class PollerDeployable:
    """`eventfed poll` in the deployable skeleton (bridge.deployable): check the topics, then
    cycle until a signal; the page in hand is written before the process stops."""

    name = "poller"
    handles_signals = False

    def __init__(self, settings: VimPollerSettings) -> None:
        self.settings = settings
        self.readiness = PollState()
        self.stop = threading.Event()
        self.producer = Producer(
            confirmed_producer_config(settings, f"poll-{settings.vim_id}", settings.delivery_timeout)
        )

    def start(self) -> None:
        check_topics(self.settings)

    def work(self) -> int:
        """Cycles until stopped; EXIT_AUTH when Nova or Keystone refuse the credentials."""
        settings = self.settings
        writer = KafkaBatchWriter.from_settings(self.producer, settings)
        nova = NovaServers(build_client(settings), settings.poll_page_size)
        poller = Poller(settings, nova, writer, KafkaCheckpoints(settings, self.producer))
        backoff = Backoff(settings.retry_backoff_initial, settings.retry_backoff_max)
        LOG.info(
            "polling vim %s every %.0f s (overlap %.0f s) -> kafka %s topic %s",
            settings.vim_id,
            settings.poll_interval,
            settings.poll_overlap_seconds,
            settings.kafka_bootstrap_servers,
            settings.raw_topic,
        )
        return poll_until_stopped(settings, poller, self.readiness, self.stop, backoff)

    def request_stop(self, signum: int) -> None:
        LOG.info("signal %d: stopping after the page in hand", signum)
        self.stop.set()

    def drain(self) -> None:
        self.producer.flush(self.settings.delivery_timeout)


def build(settings: PollerSettings) -> PollerDeployable | Any:
    """The VIMs of the VIMs file in poll mode (bridge.poller.fleet), or the environment's one VIM."""
    if settings.vims_file is not None:
        from bridge.poller.fleet import PollerFleetDeployable

        return PollerFleetDeployable(settings)
    return PollerDeployable(single_vim(settings, VimPollerSettings))


def run(args: argparse.Namespace) -> int:
    return run_deployable("poll", PollerSettings, build)


def check_topics(settings: PollerSettings) -> None:
    wanted = (settings.raw_topic, settings.dlq_topic)
    try:
        ensure_topics(
            settings,
            [spec for spec in core_topics(settings) if spec.name in wanted] + [checkpoint_topic(settings)],
        )
    except Exception as exc:
        # Not fatal: Kafka may be down at start-up; the first cycle then waits for it.
        LOG.warning("could not check the raw, dead-letter and checkpoint topics: %s", exc)
