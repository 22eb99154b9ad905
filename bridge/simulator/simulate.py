"""`eventfed simulate`: publish a simulated cloud's Nova notifications to RabbitMQ as Nova does.

Exchange `nova`, driver messagingv2, legacy notifications on topic `notifications` and versioned
ones on `versioned_notifications`, each VM's notifications in lifecycle order, the VMs interleaved.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.durability import DurabilityMismatch, declare, describe_mismatch, oslo_override
from bridge.logs import setup_logging
from bridge.rabbit_tls import apply_to_oslo, kombu_connection
from bridge.settings import RabbitSettings, SimulateSettings, load, redact_url
from bridge.simulator.novasim import Notification, SimulatedCloud

LOG = logging.getLogger(__name__)

DEFAULT_VIMS = (
    "demo-owner_region-one=rabbit://guest:guest@127.0.0.1:5672/region-one",
    "demo-owner_region-two=rabbit://guest:guest@127.0.0.1:5672/region-two",
)
TOPIC_FOR_FORMAT = {"legacy": "notifications", "versioned": "versioned_notifications"}
# Ceilometer's control exchange, where its polling agents send their samples.
SAMPLE_EXCHANGE = "ceilometer"


def plan(
    vms: int, seed: int, fmt: str, stuck_deletes: int = 0, end_stuck: bool = False
) -> list[Notification]:
    """Every notification of `vms` VM lifecycles, interleaved round-robin; the first
    `stuck_deletes` VMs that are deleted never see their delete end. With `end_stuck`, only what
    those stuck deletes left out (the same VMs: same seed), so a second run ends them."""
    cloud = SimulatedCloud(seed=seed, start=datetime.now(UTC))
    lifecycles = []
    for index in range(vms):
        vm_format = fmt if fmt != "mixed" else ("legacy" if index % 2 else "versioned")
        # Every fourth VM is deleted (SimulatedCloud.varied_lifecycle).
        stuck = index % 4 == 3 and index // 4 < stuck_deletes
        notes = list(cloud.varied_lifecycle(cloud.new_vm(index), index, vm_format, stuck and not end_stuck))
        if end_stuck:
            started = [i for i, note in enumerate(notes) if note.event_type.endswith("delete.start")]
            notes = notes[started[-1] + 1 :] if stuck and started else []
        lifecycles.append(notes)
    ordered: list[Notification] = []
    position = 0
    while any(position < len(notes) for notes in lifecycles):
        for notes in lifecycles:
            if position < len(notes):
                ordered.append(notes[position])
        position += 1
    return ordered


def sample_polls(
    vms: int, seed: int, fmt: str, polls: int, every: float, start: datetime
) -> list[list[Notification]]:
    """`polls` polls, `every` seconds apart from `start`, of the VMs that a `plan` with the same
    seed and format leaves alive (the same VMs: the lifecycles are made again to get them)."""
    cloud = SimulatedCloud(seed=seed, start=start)
    alive = []
    for index in range(vms):
        vm = cloud.new_vm(index)
        vm_format = fmt if fmt != "mixed" else ("legacy" if index % 2 else "versioned")
        for _ in cloud.varied_lifecycle(vm, index, vm_format, False):
            pass
        if vm.vm_state != "deleted":
            alive.append(vm)
    return [
        [cloud.polled_samples(vm, poll, start + timedelta(seconds=poll * every)) for vm in alive]
        for poll in range(polls)
    ]


class RabbitUnreachable(Exception):
    """A simulated cloud's RabbitMQ refused or did not answer; the message says which and why."""


class _SendFailures(logging.Handler):
    """oslo.messaging logs a notification it could not send, with a traceback, and carries on;
    this handler takes those records instead so that the simulator can stop with one line."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        self.last = str(error) if error is not None else record.getMessage().split(". Payload=")[0]


# The loggers oslo.messaging reports send failures on (notify/notifier.py, notify/messaging.py).
_OSLO_NOTIFY_LOGGERS = ("oslo_messaging.notify.notifier", "oslo_messaging.notify.messaging")
# The rabbit driver logs every failed connection attempt at ERROR; the failure is reported once.
_OSLO_QUIET_LOGGERS = ("oslo_messaging", "oslo.messaging", "kombu", "amqp")


class CloudPublisher:
    """A simulated Nova's Notifiers on one RabbitMQ. oslo publishes with publisher confirms, so a
    send that returns was confirmed by RabbitMQ; one that was not raises RabbitUnreachable."""

    def __init__(
        self,
        transport_url: str,
        vim_id: str = "simulated",
        connect_timeout: float = 5.0,
        rabbit: RabbitSettings | None = None,
        durable: bool = False,
    ) -> None:
        import oslo_messaging
        from oslo_config import cfg

        self.vim_id = vim_id
        # TLS towards RabbitMQ, as the listener's (EVENTFED_RABBIT_SSL_*); None: plain AMQP.
        self._rabbit = rabbit
        self.durable = durable
        conf = cfg.ConfigOpts()
        conf([], project="eventfed-simulate", default_config_files=[], default_config_dirs=[])
        oslo_messaging.set_transport_defaults(control_exchange="nova")
        self._check_reachable(oslo_messaging.TransportURL.parse(conf, transport_url), connect_timeout)
        self._transport = oslo_messaging.get_notification_transport(conf, url=transport_url)
        if rabbit is not None:
            apply_to_oslo(conf, rabbit)
        # As Nova's [oslo_messaging_rabbit] amqp_durable_queues; registered with the transport.
        with contextlib.suppress(cfg.NoSuchOptError, cfg.NoSuchGroupError):
            oslo_override(conf, durable)
        # retry=0: a notification that cannot be sent is a failure now, not a retry forever.
        self._notifiers = {
            fmt: oslo_messaging.Notifier(self._transport, driver="messagingv2", topics=[topic], retry=0)
            for fmt, topic in TOPIC_FOR_FORMAT.items()
        }
        self._failures = _SendFailures()
        self._conf = conf
        self._transport_url = transport_url
        self._sample_transport: Any = None
        self._sample_notifier: Any = None

    def _samples_notifier(self) -> Any:
        """The polling agents' notifier: Ceilometer's control exchange, topic notifications."""
        import oslo_messaging
        from oslo_config import cfg

        if self._sample_notifier is None:
            conf = cfg.ConfigOpts()
            conf([], project="eventfed-simulate", default_config_files=[], default_config_dirs=[])
            # The exchange is the transport's default, taken when it is made: made apart, then
            # the default put back for Nova's transports.
            oslo_messaging.set_transport_defaults(control_exchange=SAMPLE_EXCHANGE)
            try:
                self._sample_transport = oslo_messaging.get_notification_transport(
                    conf, url=self._transport_url
                )
            finally:
                oslo_messaging.set_transport_defaults(control_exchange="nova")
            if self._rabbit is not None:
                apply_to_oslo(conf, self._rabbit)
            with contextlib.suppress(cfg.NoSuchOptError, cfg.NoSuchGroupError):
                oslo_override(conf, self.durable)
            self._sample_notifier = oslo_messaging.Notifier(
                self._sample_transport, driver="messagingv2", topics=["notifications"], retry=0
            ).prepare(publisher_id="ceilometer.polling")
        return self._sample_notifier

    def publish_samples(self, note: Notification) -> None:
        """Publish one poll's samples as Ceilometer's polling agent does (priority SAMPLE)."""
        self._failures.last = None
        self._samples_notifier().sample({}, note.event_type, note.payload)
        if self._failures.last is not None:
            raise RabbitUnreachable(
                f"cloud {self.vim_id}: could not publish samples: {_explain(self._failures.last)}"
            )

    def _check_reachable(self, url: Any, timeout: float) -> None:
        """Connect once, so that a wrong address, password or virtual host stops the run at once;
        declare the exchange as this Nova would, so that a durability mismatch does too."""
        if url.transport not in ("rabbit", "amqp"):
            return  # oslo's in-memory fake:// transport, for tests: nothing to reach
        virtual_host = url.virtual_host or "/"
        last_error = "no host in the transport URL"
        for host in url.hosts:
            address = f"{host.hostname or '127.0.0.1'}:{host.port or 5672}"
            try:
                with kombu_connection(host, virtual_host, timeout, self._rabbit) as connection:
                    connection.connect()
                    declare(connection, virtual_host, "nova", self.durable, who="--durable-queues")
                return
            except DurabilityMismatch as exc:
                raise RabbitUnreachable(f"cloud {self.vim_id}: {exc}") from None
            except Exception as exc:  # socket, AMQP access and vhost errors all mean "cannot publish"
                last_error = f"{address}: {type(exc).__name__}: {exc}".rstrip(": ")
        raise RabbitUnreachable(f"cloud {self.vim_id}: RabbitMQ virtual host {virtual_host!r}: {last_error}")

    def publish(self, note: Notification) -> None:
        """Publish one notification; inside `with publisher:` a failed send raises RabbitUnreachable."""
        fmt = "legacy" if note.event_type.startswith("compute.") else "versioned"
        notifier = self._notifiers[fmt].prepare(publisher_id=note.publisher_id)
        self._failures.last = None
        getattr(notifier, note.priority.lower())({}, note.event_type, note.payload)
        if self._failures.last is not None:
            raise RabbitUnreachable(
                f"cloud {self.vim_id}: could not publish: {_explain(self._failures.last)}"
            )

    def __enter__(self) -> CloudPublisher:
        for name in _OSLO_NOTIFY_LOGGERS:
            logging.getLogger(name).addHandler(self._failures)
        return self

    def __exit__(self, *_exc: object) -> None:
        for name in _OSLO_NOTIFY_LOGGERS:
            logging.getLogger(name).removeHandler(self._failures)

    def close(self) -> None:
        self._transport.cleanup()
        if self._sample_transport is not None:
            self._sample_transport.cleanup()


def _explain(error: str) -> str:
    """A durability refusal, in the words of bridge.durability; any other error as it is."""
    match = re.search(
        r"inequivalent arg 'durable' for (exchange|queue) '([^']*)' in vhost '([^']*)': "
        r"received '(true|false)'",
        error,
    )
    if match is None:
        return error
    kind, name, vhost, wanted = match.groups()
    return describe_mismatch(kind, name, vhost, wanted == "true", "--durable-queues")


def _parse_vims(specs: list[str]) -> list[tuple[str, str]] | str:
    """(vim_id, transport_url) per --vim, or what is wrong with one of them."""
    vims = []
    for spec in specs:
        vim_id, _, url = spec.partition("=")
        if not vim_id or not url:
            return f"--vim wants VIM_ID=TRANSPORT_URL, got {redact_url(spec)!r}"
        vims.append((vim_id, url))
    return vims


def run(args: argparse.Namespace) -> int:
    settings = load(SimulateSettings)
    setup_logging(settings, "simulate")
    for name in _OSLO_QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for name in _OSLO_NOTIFY_LOGGERS:
        # Send failures are caught by _SendFailures and reported once; never propagated.
        logging.getLogger(name).propagate = False
        logging.getLogger(name).setLevel(logging.ERROR)
    vims = _parse_vims(args.vims or list(DEFAULT_VIMS))
    if isinstance(vims, str):
        LOG.error("eventfed simulate: %s", vims)
        return 2
    schedule: list[tuple[str, CloudPublisher, list[Notification]]] = []
    try:
        for index, (vim_id, url) in enumerate(vims):
            schedule.append(
                (
                    vim_id,
                    CloudPublisher(url, vim_id, rabbit=settings, durable=args.durable_queues),
                    plan(
                        args.vms, args.seed + index, args.format, args.stuck_deletes, args.end_stuck_deletes
                    ),
                )
            )
        sent, elapsed = _publish(schedule, args.rate, args.no_progress)
        if args.samples:
            sent += _publish_samples(schedule, vims, args)
    except RabbitUnreachable as exc:
        LOG.error("eventfed simulate: %s", exc)
        return 1
    finally:
        for _, publisher, _ in schedule:
            publisher.close()
    vms = args.vms * len(vims)
    print(
        f"published {sent} notifications for {vms} VMs on {len(vims)} clouds in {elapsed:.1f}s "
        f"({sent / max(elapsed, 1e-9):.0f}/s)"
    )
    return 0


def _publish_samples(
    schedule: list[tuple[str, CloudPublisher, list[Notification]]],
    vims: list[tuple[str, str]],
    args: argparse.Namespace,
) -> int:
    """Each cloud's Ceilometer samples of its live VMs, one poll every `--sample-every` seconds."""
    started = datetime.now(UTC)
    polls = [
        sample_polls(args.vms, args.seed + index, args.format, args.samples, args.sample_every, started)
        for index in range(len(vims))
    ]
    sent = 0
    for poll in range(args.samples):
        if poll:
            time.sleep(
                max(
                    0.0,
                    (
                        started + timedelta(seconds=poll * args.sample_every) - datetime.now(UTC)
                    ).total_seconds(),
                )
            )
        for (_, publisher, _), cloud_polls in zip(schedule, polls, strict=True):
            with publisher:
                for note in cloud_polls[poll]:
                    publisher.publish_samples(note)
                    sent += 1
    return sent


def _publish(
    schedule: list[tuple[str, CloudPublisher, list[Notification]]], rate: float, no_progress: bool
) -> tuple[int, float]:
    """Publish every cloud's notifications interleaved, at `rate` per cloud; (sent, seconds)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    total = sum(len(notes) for _, _, notes in schedule)
    interval = 1.0 / (rate * len(schedule)) if rate > 0 else 0.0
    progress = Progress(
        TextColumn("simulated clouds publishing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=no_progress,
    )
    started = time.monotonic()
    sent = 0
    with contextlib.ExitStack() as stack:
        for _, publisher, _ in schedule:
            stack.enter_context(publisher)
        stack.enter_context(progress)
        task = progress.add_task("publish", total=total)
        longest = max(len(notes) for _, _, notes in schedule)
        for position in range(longest):
            for _, publisher, notes in schedule:
                if position < len(notes):
                    publisher.publish(notes[position])
                    sent += 1
                    if interval:
                        delay = started + sent * interval - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
            progress.update(task, completed=sent)
    return sent, time.monotonic() - started
