"""`eventfed simulate`: publish a simulated cloud's Nova notifications to RabbitMQ as Nova does.

Exchange `nova`, driver messagingv2, legacy notifications on topic `notifications` and versioned
ones on `versioned_notifications`, each VM's notifications in lifecycle order, the VMs interleaved.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import UTC, datetime

from bridge.simulator.novasim import Notification, SimulatedCloud

LOG = logging.getLogger(__name__)

DEFAULT_VIMS = (
    "demo-owner_region-one=rabbit://guest:guest@127.0.0.1:5672/region-one",
    "demo-owner_region-two=rabbit://guest:guest@127.0.0.1:5672/region-two",
)
TOPIC_FOR_FORMAT = {"legacy": "notifications", "versioned": "versioned_notifications"}


def plan(vms: int, seed: int, fmt: str) -> list[Notification]:
    """Every notification of `vms` VM lifecycles, interleaved round-robin."""
    cloud = SimulatedCloud(seed=seed, start=datetime.now(UTC))
    lifecycles = []
    for index in range(vms):
        vm_format = fmt if fmt != "mixed" else ("legacy" if index % 2 else "versioned")
        lifecycles.append(list(cloud.varied_lifecycle(cloud.new_vm(index), index, vm_format)))
    ordered: list[Notification] = []
    position = 0
    while any(position < len(notes) for notes in lifecycles):
        for notes in lifecycles:
            if position < len(notes):
                ordered.append(notes[position])
        position += 1
    return ordered


class CloudPublisher:
    def __init__(self, transport_url: str) -> None:
        import oslo_messaging
        from oslo_config import cfg

        conf = cfg.ConfigOpts()
        conf([], project="eventfed-simulate", default_config_files=[], default_config_dirs=[])
        oslo_messaging.set_transport_defaults(control_exchange="nova")
        self._transport = oslo_messaging.get_notification_transport(conf, url=transport_url)
        self._notifiers = {
            fmt: oslo_messaging.Notifier(self._transport, driver="messagingv2", topics=[topic])
            for fmt, topic in TOPIC_FOR_FORMAT.items()
        }

    def publish(self, note: Notification) -> None:
        fmt = "legacy" if note.event_type.startswith("compute.") else "versioned"
        notifier = self._notifiers[fmt].prepare(publisher_id=note.publisher_id)
        getattr(notifier, note.priority.lower())({}, note.event_type, note.payload)

    def close(self) -> None:
        self._transport.cleanup()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    vims = []
    for spec in args.vims or DEFAULT_VIMS:
        vim_id, _, url = spec.partition("=")
        if not vim_id or not url:
            print(f"eventfed simulate: --vim wants VIM_ID=TRANSPORT_URL, got {spec!r}", file=sys.stderr)
            return 2
        vims.append((vim_id, url))
    schedule = []
    for index, (vim_id, url) in enumerate(vims):
        notes = plan(args.vms, args.seed + index, args.format)
        schedule.append((vim_id, CloudPublisher(url), notes))
    total = sum(len(notes) for _, _, notes in schedule)
    interval = 1.0 / (args.rate * len(vims)) if args.rate > 0 else 0.0
    started = time.monotonic()
    sent = 0
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("simulated clouds publishing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=args.no_progress,
    )
    try:
        with progress:
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
    finally:
        for _, publisher, _ in schedule:
            publisher.close()
    elapsed = time.monotonic() - started
    vms = args.vms * len(vims)
    print(
        f"published {sent} notifications for {vms} VMs on {len(vims)} clouds in {elapsed:.1f}s "
        f"({sent / elapsed:.0f}/s)"
    )
    return 0
