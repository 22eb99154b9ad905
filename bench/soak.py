"""`make soak`: the whole pipeline under faults for SOAK_MINUTES, then an account of every notification.

The soak starts a Kafka and a RabbitMQ of its own on free ports (it restarts them), two simulated
VIMs (a virtual host each) publishing steadily through oslo Notifiers, one listener per VIM, two
stream workers in one group and the API. While the clouds publish, at random times, it SIGKILLs
the listeners, one of the two stream workers and the API (each is started again a few seconds
later, as Kubernetes would), and restarts Kafka once and RabbitMQ once.

oslo publishes with publisher confirms: a send that returns was confirmed by RabbitMQ. A send
that was not confirmed (RabbitMQ restarting) is retried, as Nova's Notifier does, for up to
SOAK_GIVE_UP_SECONDS; one never confirmed is lost by RabbitMQ itself, counted with its error.

At the end the soak waits for the pipeline to drain, then checks:
  - every confirmed notification is on the events topic or the dead-letter topic;
  - the state of every VM, read through the API, is its last confirmed notification;
  - every process answers its liveness endpoint and exits on SIGTERM within a bound.
It writes a report (SOAK_REPORT, default bench/results/soak.md) and exits 1 on any discrepancy.

Settings (environment): SOAK_MINUTES (10) of publishing, SOAK_RATE notifications/s per VIM (20),
SOAK_SEED (random), SOAK_DURABLE (true: the listeners' EVENTFED_DURABLE_QUEUES and the clouds'
amqp_durable_queues), SOAK_REPORT, SOAK_WORKDIR (a temporary folder, removed after a pass).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.machine import describe, one_line
from tests.support.processes import ROOT, Proc, clean_env, free_port
from tests.support.rabbit import PrivateRabbitMQ

LOG = logging.getLogger("soak")

VIMS = ("soakowner_region-one", "soakowner_region-two")
PARTITIONS = 4
# How long a process may take to answer its liveness endpoint, and to exit on SIGTERM (the
# listener flushes Kafka for up to its delivery timeout, 30 s by default).
HEALTH_BOUND_SECONDS = 5.0
EXIT_BOUND_SECONDS = 60.0
# Drain: the end of the run waits this long after the last progress on the events topic.
DRAIN_QUIET_SECONDS = 120.0
DRAIN_MAX_SECONDS = 600.0
RESTART_DELAY_SECONDS = (1.0, 5.0)
# How long Kafka is down before RabbitMQ is restarted: the backlog its queues then hold.
BACKLOG_SECONDS = (10.0, 20.0)
# Liveness probes while the soak runs, as Kubernetes would: a process that misses this many in a
# row (each within HEALTH_BOUND_SECONDS) counts as hung.
PROBE_INTERVAL_SECONDS = 10.0
PROBE_FAILURES_HUNG = 3
PROBE_GRACE_SECONDS = 30.0


# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakSettings:
    minutes: float
    rate: float
    seed: int
    durable: bool
    give_up_seconds: float
    report: Path
    workdir: Path | None

    @classmethod
    def from_env(cls, environ: dict[str, str] | os._Environ[str] = os.environ) -> SoakSettings:
        def number(name: str, default: float, minimum: float) -> float:
            text = environ.get(name, "")
            try:
                value = float(text) if text else default
            except ValueError:
                raise SystemExit(f"soak: {name} must be a number, got {text!r}") from None
            if value < minimum:
                raise SystemExit(f"soak: {name} must be at least {minimum}, got {value}")
            return value

        durable_text = environ.get("SOAK_DURABLE", "true").strip().lower()
        if durable_text not in ("true", "false", "1", "0", "yes", "no"):
            raise SystemExit(f"soak: SOAK_DURABLE must be true or false, got {durable_text!r}")
        workdir = environ.get("SOAK_WORKDIR")
        return cls(
            minutes=number("SOAK_MINUTES", 10, 1),
            rate=number("SOAK_RATE", 20, 1),
            seed=int(number("SOAK_SEED", random.SystemRandom().randrange(1, 1_000_000), 0)),
            durable=durable_text in ("true", "1", "yes"),
            give_up_seconds=number("SOAK_GIVE_UP_SECONDS", 180, 1),
            report=Path(environ.get("SOAK_REPORT") or ROOT / "bench" / "results" / "soak.md"),
            workdir=Path(workdir) if workdir else None,
        )


# --- pure: the fault plan and the account ------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after publishing started
    kind: str  # kill-listener, kill-stream, kill-api, restart-brokers
    target: str  # the process or broker


def plan_faults(seconds: float, rng: random.Random) -> list[Fault]:
    """Random times in 10%..80% of the run: each listener, one of the two stream workers (chosen
    at random each time) and the API killed once per 4 minutes (at least once); in 10%..50%,
    Kafka and RabbitMQ restarted once each, RabbitMQ while Kafka is down. Sorted by time."""
    kills_each = max(1, round(seconds / 240))
    faults = []
    for _ in range(kills_each):
        for vim in VIMS:
            faults.append(("kill-listener", f"listen-{vim}"))
        faults.append(("kill-stream", rng.choice(("stream-1", "stream-2"))))
        faults.append(("kill-api", "api"))
    # RabbitMQ is restarted while Kafka is down, so that its queues then hold a backlog (the
    # listeners keep every batch unacked until Kafka has it): what a restart could lose.
    start, end = 0.1 * seconds, 0.8 * seconds
    planned = [Fault(round(rng.uniform(start, end), 1), kind, target) for kind, target in faults]
    # The brokers' restart takes a minute or so: early enough to end while the clouds publish.
    planned.append(Fault(round(rng.uniform(start, 0.5 * seconds), 1), "restart-brokers", "kafka, rabbitmq"))
    return sorted(planned, key=lambda f: f.at)


Fingerprint = tuple[str, str, str]  # (vim_id, instance_id, event_type)


@dataclass
class Account:
    """Where each confirmed notification ended up."""

    confirmed: int = 0
    on_events: int = 0
    on_dead_letter: int = 0
    missing: list[Fingerprint] = field(default_factory=list)
    lost_by_rabbitmq: Counter[str] = field(default_factory=Counter)
    lost_but_delivered: int = 0
    unexpected: list[Fingerprint] = field(default_factory=list)
    duplicates_on_events: int = 0
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)


def account(
    confirmed: list[Fingerprint],
    lost: list[tuple[Fingerprint, str]],
    events: Counter[Fingerprint],
    dead: dict[Fingerprint, str],
) -> Account:
    """Every confirmed notification on the events or the dead-letter topic; what was never
    confirmed counted apart, by RabbitMQ's error; anything on the topics nobody sent, listed."""
    result = Account(confirmed=len(confirmed))
    sent = set(confirmed)
    for fingerprint in confirmed:
        if fingerprint in events:
            result.on_events += 1
        elif fingerprint in dead:
            result.on_dead_letter += 1
            result.dead_letter_reasons[dead[fingerprint]] += 1
        else:
            result.missing.append(fingerprint)
    lost_set = set()
    for fingerprint, reason in lost:
        lost_set.add(fingerprint)
        result.lost_by_rabbitmq[reason] += 1
        if fingerprint in events or fingerprint in dead:
            result.lost_but_delivered += 1
    result.unexpected = sorted(f for f in set(events) | set(dead) if f not in sent and f not in lost_set)
    result.duplicates_on_events = sum(n - 1 for n in events.values() if n > 1)
    return result


def last_events(confirmed: list[Fingerprint]) -> dict[tuple[str, str], str]:
    """(vim_id, instance_id) -> the event type of its last confirmed notification."""
    last: dict[tuple[str, str], str] = {}
    for vim_id, instance_id, event_type in confirmed:
        last[(vim_id, instance_id)] = event_type
    return last


# --- the simulated clouds -------------------------------------------------------------------


def publisher_main(
    vim_id: str,
    url: str,
    rate: float,
    seconds: float,
    seed: int,
    durable: bool,
    give_up: float,
    out_path: str,
) -> None:
    """One simulated cloud: its VMs' lifecycles at `rate`/s for `seconds`, every send confirmed or
    retried; writes what was confirmed, retried and lost to `out_path` (JSON)."""
    from bench.publish import notes_for
    from bridge.logs import configure
    from bridge.simulator.simulate import (
        _OSLO_NOTIFY_LOGGERS,
        _OSLO_QUIET_LOGGERS,
        CloudPublisher,
        RabbitUnreachable,
    )

    configure("WARNING", "text", f"soak-publisher-{vim_id}")
    for name in _OSLO_QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for name in _OSLO_NOTIFY_LOGGERS:
        logging.getLogger(name).propagate = False
        logging.getLogger(name).setLevel(logging.ERROR)
    notes = notes_for(int(rate * seconds) + 1, seed)
    publisher = CloudPublisher(url, vim_id, durable=durable)
    confirmed: list[Fingerprint] = []
    lost: list[tuple[Fingerprint, str]] = []
    retried: Counter[str] = Counter()
    worst_lag = 0.0
    started = time.monotonic()
    with publisher:
        for number, note in enumerate(notes):
            due = started + number / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            else:
                worst_lag = max(worst_lag, now - due)
            fingerprint = (vim_id, note.instance_id, note.event_type)
            first_try = time.monotonic()
            while True:
                try:
                    publisher.publish(note)
                    confirmed.append(fingerprint)
                    break
                except RabbitUnreachable as exc:
                    reason = _reason(str(exc))
                    if time.monotonic() - first_try > give_up:
                        lost.append((fingerprint, reason))
                        break
                    retried[reason] += 1
                    time.sleep(1.0)
    publisher.close()
    Path(out_path).write_text(
        json.dumps(
            {
                "vim_id": vim_id,
                "confirmed": confirmed,
                "lost": lost,
                "retried": dict(retried),
                "seconds": time.monotonic() - started,
                "worst_lag_seconds": worst_lag,
            }
        )
    )


def _reason(error: str) -> str:
    """An error reduced to its kind, so that the report counts reasons, not messages."""
    text = error.split("could not publish: ", 1)[-1]
    kinds = {
        "Connection refused": "connection refused",
        "Errno 104": "connection reset",
        "ECONNRESET": "connection reset",
        "timed out": "timed out",
        "Socket closed": "socket closed",
        "Server unexpectedly closed": "socket closed",
        "PRECONDITION_FAILED": "PRECONDITION_FAILED",
    }
    for word, kind in kinds.items():
        if word.lower() in text.lower():
            return kind
    return text[:80]


# --- brokers and processes --------------------------------------------------------------------


class Brokers:
    """A Kafka and a RabbitMQ of the soak's own, started, restarted and stopped by their scripts."""

    def __init__(self, rng: random.Random, log_dir: Path) -> None:
        self.kafka_port = free_port()
        self.kafka_env = {
            **os.environ,
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
        }
        self.rabbit = PrivateRabbitMQ(log_dir / "rabbitmq-script.log", rng)
        self.log_dir = log_dir
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"

    def kafka(self, action: str) -> None:
        with open(self.log_dir / "kafka-script.log", "ab") as log:
            result = subprocess.run(
                [str(ROOT / "scripts" / "kafka"), action],
                env=self.kafka_env,
                stdout=log,
                stderr=log,
                timeout=300,
            )
        if result.returncode != 0:
            raise RuntimeError(f"scripts/kafka {action} failed (see {self.log_dir}/kafka-script.log)")

    def rabbitmq(self, action: str) -> None:
        self.rabbit.script(action)

    def transport_url(self, vim_id: str) -> str:
        return self.rabbit.url(vim_id.split("_", 1)[1])

    def start(self) -> None:
        self.kafka("start")
        self.rabbit.start()
        for vim in VIMS:
            self.rabbit.add_vhost(vim.split("_", 1)[1])

    def stop(self) -> None:
        for action in (lambda: self.kafka("stop"), self.rabbit.stop):
            try:
                action()
            except Exception as exc:  # stopping what is left: report, carry on
                LOG.warning("stopping a broker: %s", exc)

    def remove_data(self) -> None:
        """The brokers' data folders, once they are stopped."""
        shutil.rmtree(ROOT / ".run" / f"kafka-{self.kafka_port}", ignore_errors=True)
        self.rabbit.remove_data()


@dataclass
class Managed:
    """An eventfed process the soak keeps running: its arguments, settings, health port."""

    name: str
    args: list[str]
    env: dict[str, str]
    health_url: str
    ready_url: str
    proc: Proc | None = None
    starts: int = 0
    started_at: float = 0.0
    probes: int = 0
    probe_failures: int = 0
    failures_in_a_row: int = 0
    # Killed by the soak and waiting for its scheduled restart: not to be revived meanwhile.
    held: bool = False


class Fleet:
    def __init__(self, workdir: Path, brokers: Brokers, durable: bool) -> None:
        self.workdir = workdir
        self.brokers = brokers
        self.timeline: list[tuple[float, str]] = []
        self.hung: dict[str, int] = {}
        self.t0 = time.monotonic()
        common = clean_env(
            EVENTFED_KAFKA_BOOTSTRAP_SERVERS=brokers.bootstrap,
            EVENTFED_PARTITIONS=str(PARTITIONS),
            EVENTFED_LOG_LEVEL="INFO",
        )
        self.common = common
        self.managed: dict[str, Managed] = {}
        for vim in VIMS:
            port = free_port()
            self._add(
                f"listen-{vim}",
                ["listen"],
                {
                    **common,
                    "EVENTFED_TRANSPORT_URL": brokers.transport_url(vim),
                    "EVENTFED_VIM_ID": vim,
                    "EVENTFED_METRICS_PORT": str(port),
                    "EVENTFED_DURABLE_QUEUES": str(durable).lower(),
                },
                port,
            )
        for index in (1, 2):
            port = free_port()
            self._add(
                f"stream-{index}",
                ["stream"],
                {
                    **common,
                    "EVENTFED_METRICS_PORT": str(port),
                    "EVENTFED_WEB_PORT": str(free_port()),
                    "EVENTFED_DATA_DIR": str(workdir / f"stream-{index}-data"),
                },
                port,
            )
        self.api_port = free_port()
        self._add("api", ["api"], {**common, "EVENTFED_API_PORT": str(self.api_port)}, self.api_port)

    def _add(self, name: str, args: list[str], env: dict[str, str], port: int) -> None:
        self.managed[name] = Managed(
            name, args, env, f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{port}/readyz"
        )

    def note(self, text: str) -> None:
        elapsed = time.monotonic() - self.t0
        self.timeline.append((elapsed, text))
        LOG.warning("soak t=%.1fs %s", elapsed, text)

    def start(self, name: str) -> None:
        managed = self.managed[name]
        if managed.proc is not None and managed.proc.alive():
            raise RuntimeError(f"{name} is already running (pid {managed.proc.pid})")
        managed.proc = Proc(managed.args, managed.env, self.workdir / f"{name}.log")
        managed.held = False
        managed.starts += 1
        managed.started_at = time.monotonic()
        managed.failures_in_a_row = 0

    def kill(self, name: str) -> None:
        managed = self.managed[name]
        assert managed.proc is not None
        managed.held = True
        managed.proc.kill()
        self.note(f"SIGKILL {name} (pid {managed.proc.pid})")

    def wait_ready(self, names: list[str], timeout: float) -> dict[str, float]:
        """Seconds until each answered /readyz with 200 (or -1 if it did not within `timeout`)."""
        started = time.monotonic()
        ready: dict[str, float] = {}
        while time.monotonic() - started < timeout and len(ready) < len(names):
            for name in names:
                if name not in ready and _http_ok(self.managed[name].ready_url, 2):
                    ready[name] = time.monotonic() - started
            time.sleep(0.5)
        return {name: ready.get(name, -1.0) for name in names}

    def probe_liveness(self) -> None:
        """Each running process past its start-up grace answers /healthz, or a failure is counted."""
        for name, managed in self.managed.items():
            if managed.proc is None or managed.held or not managed.proc.alive():
                continue
            if time.monotonic() - managed.started_at < PROBE_GRACE_SECONDS:
                continue
            managed.probes += 1
            if _http_ok(managed.health_url, HEALTH_BOUND_SECONDS):
                managed.failures_in_a_row = 0
                continue
            managed.probe_failures += 1
            managed.failures_in_a_row += 1
            self.note(f"{name} did not answer its liveness probe ({managed.failures_in_a_row} in a row)")
            if managed.failures_in_a_row >= PROBE_FAILURES_HUNG:
                self.hung[name] = managed.failures_in_a_row

    def revive_exited(self) -> None:
        """A process that exited by itself is noted and started again, as Kubernetes would."""
        for name, managed in self.managed.items():
            if managed.proc is not None and not managed.held and not managed.proc.alive():
                self.note(f"{name} exited by itself (code {managed.proc.popen.returncode}); started again")
                self.start(name)

    def stop_all(self) -> None:
        for managed in self.managed.values():
            if managed.proc is not None and managed.proc.alive():
                with contextlib.suppress(Exception):
                    managed.proc.terminate(EXIT_BOUND_SECONDS)


def _http_ok(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


# --- reading what arrived ---------------------------------------------------------------------


class TopicReader:
    """Reads the events and the dead-letter topics from the beginning, incrementally."""

    def __init__(self, bootstrap: str, events_topic: str, dlq_topic: str) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.events_topic = events_topic
        self.dlq_topic = dlq_topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"soak-reader-{os.getpid()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        assignment = []
        for topic in (events_topic, dlq_topic):
            metadata = self.consumer.list_topics(topic, timeout=30)
            assignment += [
                TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions
            ]
        self.consumer.assign(assignment)
        self.events: Counter[Fingerprint] = Counter()
        self.dead: dict[Fingerprint, str] = {}
        self.undecodable = 0

    def poll(self, seconds: float) -> int:
        """Read for about `seconds`; returns how many records came."""
        from schemas.raw import HEADER_EVENT_TYPE, HEADER_REASON, HEADER_VIM_ID, unpack
        from streams import codecs

        deadline = time.monotonic() + seconds
        count = 0
        while time.monotonic() < deadline:
            for msg in self.consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                count += 1
                try:
                    if msg.topic() == self.events_topic:
                        event = codecs.decode(msg.value() or b"", "avro")
                        self.events[
                            (str(event["vim_id"]), str(event["instance_id"]), str(event["event_type"]))
                        ] += 1
                        continue
                    reason = _header(msg.headers() or [], HEADER_REASON) or "?"
                    for single in unpack(msg.key(), msg.value() or b"", msg.headers() or []):
                        vim = _header(single.headers, HEADER_VIM_ID)
                        event_type = _header(single.headers, HEADER_EVENT_TYPE)
                        self.dead[(vim, single.key.decode(errors="replace"), event_type)] = reason
                except Exception:
                    self.undecodable += 1
        return count

    def close(self) -> None:
        self.consumer.close()


def _header(headers: Any, name: str) -> str:
    for key, value in headers:
        if key == name:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")
    return ""


def api_state(api_port: int, wanted: dict[tuple[str, str], str]) -> dict[tuple[str, str], str | None]:
    """The event type of each wanted VM's state record, read through the API (None: no record)."""
    got: dict[tuple[str, str], str | None] = {}
    for (vim_id, instance_id), _ in wanted.items():
        owner, region = vim_id.split("_", 1)
        url = f"http://127.0.0.1:{api_port}/api/eventfed/v1/{owner}/{region}/vms/{instance_id}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                got[(vim_id, instance_id)] = json.loads(response.read()).get("event_type")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            got[(vim_id, instance_id)] = None
    return got


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    settings: SoakSettings
    machine: dict[str, Any]
    timeline: list[tuple[float, str]]
    publishers: list[dict[str, Any]]
    account: Account
    state_checked: int
    state_mismatches: list[tuple[tuple[str, str], str, str | None]]
    health: dict[str, bool]
    exits: dict[str, tuple[int | None, float]]
    starts: dict[str, int]
    probes: dict[str, tuple[int, int]]
    drain_seconds: float
    undecodable: int
    problems: list[str]
    workdir: Path

    @property
    def passed(self) -> bool:
        return not self.problems


def run_soak(settings: SoakSettings) -> Outcome:
    rng = random.Random(settings.seed)
    seconds = settings.minutes * 60
    workdir = settings.workdir or Path(tempfile.mkdtemp(prefix="eventfed-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    brokers = Brokers(rng, workdir)
    machine = describe()
    LOG.warning(
        "soak: %s min at %s/s per VIM, seed %s, logs in %s",
        settings.minutes,
        settings.rate,
        settings.seed,
        workdir,
    )
    fleet: Fleet | None = None
    try:
        brokers.start()
        fleet = Fleet(workdir, brokers, settings.durable)
        fleet.note(f"Kafka on {brokers.bootstrap}, RabbitMQ on 127.0.0.1:{brokers.rabbit.port}")
        subprocess.run(
            [str(Path(sys.executable).with_name("eventfed")), "topics"],
            env=fleet.common,
            check=True,
            capture_output=True,
            timeout=120,
        )
        return _run(settings, rng, seconds, workdir, brokers, fleet, machine)
    finally:
        if fleet is not None:
            fleet.stop_all()
        brokers.stop()
        brokers.remove_data()


def _run(
    settings: SoakSettings,
    rng: random.Random,
    seconds: float,
    workdir: Path,
    brokers: Brokers,
    fleet: Fleet,
    machine: dict[str, Any],
) -> Outcome:
    problems: list[str] = []
    # The listeners first: a notification sent before a listener's queue is bound would reach
    # only oslo's default queue (notifications.info), which nothing here reads.
    context = multiprocessing.get_context("spawn")
    outputs = [workdir / f"publisher-{vim}.json" for vim in VIMS]
    publishers = [
        context.Process(
            target=publisher_main,
            args=(
                vim,
                brokers.transport_url(vim),
                settings.rate,
                seconds,
                settings.seed * 10 + index,
                settings.durable,
                settings.give_up_seconds,
                str(out),
            ),
            name=f"soak-publisher-{index}",
            daemon=True,  # ended with the soak, should it be stopped early
        )
        for index, (vim, out) in enumerate(zip(VIMS, outputs, strict=True))
    ]
    for name in fleet.managed:
        fleet.start(name)
    ready = fleet.wait_ready(list(fleet.managed), 180)
    not_ready = [name for name, after in ready.items() if after < 0]
    if not_ready:
        raise RuntimeError(f"not ready after 180 s: {', '.join(not_ready)} (logs in {workdir})")
    fleet.note("all processes ready; the clouds start publishing")
    for process in publishers:
        process.start()
    started = time.monotonic()
    faults = plan_faults(seconds, rng)
    pending = list(faults)
    restarts: list[tuple[float, str]] = []  # (due, name)
    broker_restart: threading.Thread | None = None
    next_probe = 0.0
    # Faults left when the clouds finish (a slow broker restart delays the next ones) still happen.
    while (
        any(p.is_alive() for p in publishers)
        or restarts
        or pending
        or (broker_restart is not None and broker_restart.is_alive())
    ):
        now = time.monotonic() - started
        fleet.revive_exited()
        if now >= next_probe:
            fleet.probe_liveness()
            next_probe = now + PROBE_INTERVAL_SECONDS
        for due, name in [r for r in restarts if r[0] <= now]:
            restarts.remove((due, name))
            fleet.start(name)
            fleet.note(f"started {name} again")
        if pending and pending[0].at <= now and _can_inject(pending[0], fleet, broker_restart):
            fault = pending.pop(0)
            if fault.kind.startswith("kill-"):
                fleet.kill(fault.target)
                restarts.append((now + rng.uniform(*RESTART_DELAY_SECONDS), fault.target))
            else:
                # In a thread: the processes are killed and probed while a broker is down, too.
                broker_restart = threading.Thread(
                    target=_restart_brokers,
                    args=(brokers, fleet, rng.uniform(*BACKLOG_SECONDS), problems),
                    name="restart-brokers",
                    daemon=True,
                )
                broker_restart.start()
        time.sleep(0.2)
    if broker_restart is not None:
        broker_restart.join(600)
    for process in publishers:
        process.join(60)
    fleet.note("the clouds finished publishing and every fault was injected")
    for name, failures in fleet.hung.items():
        problems.append(
            f"{name} failed {failures} liveness probes in a row ({HEALTH_BOUND_SECONDS:g} s each)"
        )
    results = []
    for out in outputs:
        if not out.exists():
            problems.append(f"a publisher wrote no result ({out.name})")
            continue
        results.append(json.loads(out.read_text()))
    confirmed: list[Fingerprint] = [(v, i, e) for r in results for v, i, e in r["confirmed"]]
    lost: list[tuple[Fingerprint, str]] = [((v, i, e), why) for r in results for (v, i, e), why in r["lost"]]

    # Drain: until every confirmed notification is on a topic, or nothing new came for a while.
    reader = TopicReader(brokers.bootstrap, "eventfed.vm.events", "eventfed.dlq")
    drain_started = time.monotonic()
    last_progress = time.monotonic()
    wanted = set(confirmed)
    while time.monotonic() - drain_started < DRAIN_MAX_SECONDS:
        fleet.revive_exited()
        if reader.poll(2.0):
            last_progress = time.monotonic()
        if all(f in reader.events or f in reader.dead for f in wanted):
            break
        if time.monotonic() - last_progress > DRAIN_QUIET_SECONDS:
            break
    reader.poll(3.0)  # stragglers (duplicates) already on their way
    drain_seconds = time.monotonic() - drain_started
    fleet.note(f"drained in {drain_seconds:.0f} s")
    result = account(confirmed, lost, reader.events, reader.dead)
    reader.close()
    if result.missing:
        problems.append(f"{len(result.missing)} confirmed notifications are on neither topic")
    if result.unexpected:
        problems.append(f"{len(result.unexpected)} records on the topics match no notification sent")

    # State: each VM's record through the API is its last confirmed notification (the API reads
    # the state topic, which may trail the events topic by a moment: asked again for a while).
    expected_last = last_events(confirmed)
    fleet.wait_ready(["api"], 120)
    mismatches: list[tuple[tuple[str, str], str, str | None]] = []
    deadline = time.monotonic() + 90
    todo = dict(expected_last)
    while True:
        got = api_state(fleet.api_port, todo)
        mismatches = [(vm, todo[vm], got[vm]) for vm in todo if got[vm] != todo[vm]]
        todo = {vm: want for vm, want, _ in mismatches}
        if not mismatches or time.monotonic() > deadline:
            break
        time.sleep(3)
    if mismatches:
        problems.append(f"{len(mismatches)} VMs whose state through the API is not their last event")

    # No process hung: each answers its liveness endpoint, then exits on SIGTERM within the bound.
    fleet.revive_exited()
    health = {name: _http_ok(m.health_url, HEALTH_BOUND_SECONDS) for name, m in fleet.managed.items()}
    for name, ok in health.items():
        if not ok:
            problems.append(
                f"{name} did not answer {fleet.managed[name].health_url} within {HEALTH_BOUND_SECONDS} s"
            )
    exits: dict[str, tuple[int | None, float]] = {}
    for name, managed in fleet.managed.items():
        assert managed.proc is not None
        began = time.monotonic()
        try:
            code: int | None = managed.proc.terminate(EXIT_BOUND_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        exits[name] = (code, time.monotonic() - began)
        if code is None:
            problems.append(f"{name} did not exit within {EXIT_BOUND_SECONDS} s of SIGTERM (killed)")
        elif code != 0:
            problems.append(f"{name} exited with code {code} on SIGTERM")
    fleet.note("every process stopped")
    return Outcome(
        settings=settings,
        machine=machine,
        timeline=fleet.timeline,
        publishers=[{k: v for k, v in r.items() if k not in ("confirmed", "lost")} for r in results],
        account=result,
        state_checked=len(expected_last),
        state_mismatches=mismatches,
        health=health,
        exits=exits,
        starts={name: m.starts for name, m in fleet.managed.items()},
        probes={name: (m.probe_failures, m.probes) for name, m in fleet.managed.items()},
        drain_seconds=drain_seconds,
        undecodable=reader.undecodable,
        problems=problems,
        workdir=workdir,
    )


def _can_inject(fault: Fault, fleet: Fleet, broker_restart: threading.Thread | None) -> bool:
    """One broker restart at a time; a process is killed again only once it runs again."""
    if fault.kind.startswith("kill-"):
        managed = fleet.managed[fault.target]
        return managed.proc is not None and not managed.held and managed.proc.alive()
    return broker_restart is None or not broker_restart.is_alive()


def _restart_brokers(brokers: Brokers, fleet: Fleet, down: float, problems: list[str]) -> None:
    """Kafka stopped; once RabbitMQ's queues hold a backlog, RabbitMQ restarted; Kafka started."""
    step = "stopping Kafka"
    began = time.monotonic()
    try:
        brokers.kafka("stop")
        fleet.note("kafka stopped")
        time.sleep(down)
        step = "restarting RabbitMQ"
        fleet.note(f"RabbitMQ's queues hold {_queued(brokers)}; rabbitmq stopping")
        rabbit_began = time.monotonic()
        brokers.rabbitmq("stop")
        fleet.note("rabbitmq stopped")
        time.sleep(min(down, RESTART_DELAY_SECONDS[1]))
        brokers.rabbitmq("start")
        fleet.note(
            f"rabbitmq started again ({time.monotonic() - rabbit_began:.0f} s down); "
            f"its queues hold {_queued(brokers)}"
        )
        step = "starting Kafka"
        brokers.kafka("start")
        fleet.note(f"kafka started again ({time.monotonic() - began:.0f} s down)")
    except Exception as exc:
        problems.append(f"{step}: {exc}")
        fleet.note(f"{step} failed: {exc}")


def _queued(brokers: Brokers) -> str:
    """Messages (ready and unacked) in each cloud's queues, as RabbitMQ counts them."""
    parts = []
    for vim in VIMS:
        vhost = vim.split("_", 1)[1]
        try:
            depths = brokers.rabbit.queue_depths(vhost)
        except Exception as exc:
            parts.append(f"{vhost}: unknown ({exc})")
            continue
        parts.append(f"{vhost}: " + ", ".join(f"{n} in {q}" for q, n in sorted(depths.items())))
    return "; ".join(parts)


# --- the report -------------------------------------------------------------------------------


def render(outcome: Outcome) -> str:
    s = outcome.settings
    a = outcome.account
    verdict = "PASS" if outcome.passed else "FAIL"
    lines = [
        "# Soak: the pipeline under faults",
        "",
        f"**Verdict: {verdict}**" + ("" if outcome.passed else f" ({len(outcome.problems)} discrepancies)"),
        "",
        "Produced by `make soak` (`bench/soak.py`); the design and what is checked are in its docstring.",
        "",
        "## Machine and settings",
        "",
        f"- Machine: {one_line(outcome.machine)}; load average at start "
        f"{', '.join(str(x) for x in outcome.machine['load_average_at_start'])}",
        f"- Code: {outcome.machine['code']}",
        f"- {s.minutes:g} minutes of publishing, {s.rate:g} notifications/s per VIM, 2 VIMs, seed {s.seed}",
        f"- Queues {'durable' if s.durable else 'non-durable'} "
        f"(EVENTFED_DURABLE_QUEUES={str(s.durable).lower()}, the clouds' amqp_durable_queues the same); "
        f"unconfirmed sends retried for up to {s.give_up_seconds:g} s",
        f"- Processes: {len(VIMS)} listeners, 2 stream workers (one group), the API; "
        f"{PARTITIONS} partitions; a Kafka and a RabbitMQ of the soak's own",
        "",
        "## Timeline",
        "",
        "| t (s) | what happened |",
        "|---:|---|",
        *(f"| {t:.1f} | {text} |" for t, text in outcome.timeline),
        "",
        "## Counts",
        "",
        "| | notifications |",
        "|---|---:|",
        f"| confirmed by RabbitMQ (published) | {a.confirmed} |",
        f"| on the events topic | {a.on_events} |",
        f"| on the dead-letter topic | {a.on_dead_letter} |",
        f"| on neither (missing) | {len(a.missing)} |",
        f"| never confirmed, lost by RabbitMQ itself | {sum(a.lost_by_rabbitmq.values())} |",
        f"| of those, delivered all the same | {a.lost_but_delivered} |",
        f"| duplicates on the events topic (at-least-once) | {a.duplicates_on_events} |",
        f"| records on the topics matching nothing sent | {len(a.unexpected)} |",
        f"| records that could not be decoded | {outcome.undecodable} |",
        "",
    ]
    for reason, count in sorted(a.lost_by_rabbitmq.items()):
        lines.append(f"- lost by RabbitMQ: {count} x {reason}")
    for reason, count in sorted(a.dead_letter_reasons.items()):
        lines.append(f"- dead-lettered: {count} x {reason}")
    lines += ["", "Publishers (sends not confirmed were retried after a second):", ""]
    for p in outcome.publishers:
        retried = ", ".join(f"{n} x {r}" for r, n in sorted(p["retried"].items())) or "none"
        lines.append(
            f"- {p['vim_id']}: {p['seconds']:.0f} s, worst lag behind schedule "
            f"{p['worst_lag_seconds']:.1f} s, retried sends: {retried}"
        )
    lines += [
        "",
        f"Drained in {outcome.drain_seconds:.0f} s after the clouds finished.",
        "",
        "## State through the API",
        "",
        f"{outcome.state_checked} VMs checked; {len(outcome.state_mismatches)} whose state record is not "
        "their last confirmed notification.",
    ]
    for vm, want, got in outcome.state_mismatches[:20]:
        lines.append(f"- {vm[0]}/{vm[1]}: want {want}, API has {got}")
    lines += [
        "",
        "## Processes",
        "",
        f"Liveness probes every {PROBE_INTERVAL_SECONDS:g} s while the soak ran, each answered within "
        f"{HEALTH_BOUND_SECONDS:g} s or failed; {PROBE_FAILURES_HUNG} failures in a row count as hung.",
        "",
        "| process | started | probes failed / made | liveness at the end | exit code on SIGTERM | "
        "seconds to exit |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name, (code, took) in outcome.exits.items():
        failed, made = outcome.probes[name]
        lines.append(
            f"| {name} | {outcome.starts[name]} | {failed} / {made} | "
            f"{'answered' if outcome.health.get(name) else 'NO ANSWER'} | "
            f"{'none (killed)' if code is None else code} | {took:.1f} |"
        )
    lines += ["", "## Discrepancies", ""]
    lines += [f"- {p}" for p in outcome.problems] or ["None."]
    for fingerprint in outcome.account.missing[:20]:
        lines.append(f"- missing: {fingerprint}")
    return "\n".join(lines) + "\n"


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stderr)
    settings = SoakSettings.from_env()
    # SIGTERM (make interrupted, a CI timeout) stops the brokers and processes through `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        outcome = run_soak(settings)
    except Exception as exc:
        print(f"soak: could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    settings.report.parent.mkdir(parents=True, exist_ok=True)
    settings.report.write_text(render(outcome))
    a = outcome.account
    print(
        f"soak {'PASS' if outcome.passed else 'FAIL'}: {a.confirmed} confirmed, {a.on_events} on events, "
        f"{a.on_dead_letter} dead-lettered, {len(a.missing)} missing, "
        f"{sum(a.lost_by_rabbitmq.values())} lost by RabbitMQ; {outcome.state_checked} VM states, "
        f"{len(outcome.state_mismatches)} wrong; report {settings.report}"
    )
    for problem in outcome.problems:
        print(f"  - {problem}", file=sys.stderr)
    if outcome.passed and settings.workdir is None:
        shutil.rmtree(outcome.workdir, ignore_errors=True)
    else:
        print(f"soak: the processes' logs are in {outcome.workdir}", file=sys.stderr)
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    sys.exit(main())
