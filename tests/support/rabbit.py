"""A Notifier configured as Nova is, and a look at what RabbitMQ holds."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from tests.support.processes import ROOT


class NovaNotifier:
    """oslo.messaging Notifier on exchange `nova`, driver messagingv2, as nova-compute sends."""

    def __init__(self, url: str, topic: str, publisher_id: str = "compute.host-1") -> None:
        import oslo_messaging
        from oslo_config import cfg

        conf = cfg.ConfigOpts()
        conf([], project="eventfed-test", default_config_files=[], default_config_dirs=[])
        oslo_messaging.set_transport_defaults(control_exchange="nova")
        self.transport = oslo_messaging.get_notification_transport(conf, url=url)
        self._notifier = oslo_messaging.Notifier(
            self.transport, publisher_id=publisher_id, driver="messagingv2", topics=[topic]
        )

    def send(
        self, event_type: str, payload: Any, priority: str = "info", publisher_id: str | None = None
    ) -> None:
        notifier = self._notifier.prepare(publisher_id=publisher_id) if publisher_id else self._notifier
        getattr(notifier, priority.lower())({}, event_type, payload)

    def close(self) -> None:
        self.transport.cleanup()


def queue_depths() -> dict[str, tuple[int, int]]:
    """queue name -> (ready, unacknowledged)."""
    out = subprocess.run(
        [
            str(ROOT / "scripts/rabbitmq"),
            "ctl",
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    depths: dict[str, tuple[int, int]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            depths[parts[0]] = (int(parts[1]), int(parts[2]))
    return depths


def wait_for_queue(name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name in queue_depths():
            return
        time.sleep(0.5)
    raise AssertionError(f"queue {name} was not declared within {timeout}s")
