"""A Notifier configured as Nova is, and a look at what RabbitMQ holds."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.processes import ROOT, free_port


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


class PrivateRabbit:
    """A RabbitMQ node of a test's own (scripts/rabbitmq on free ports), optionally with an AMQPS
    listener using the PEM files of `tls_dir` (ca.crt, server.crt, server.key)."""

    def __init__(self, tls_dir: Path | None = None) -> None:
        import os

        self.port = _free_port_pair()
        self.tls_port = free_port() if tls_dir is not None else None
        # As scripts/rabbitmq chooses it: a node started as root runs as `rabbitmq`, which needs a
        # folder of its own outside the checkout.
        self.run_dir = (
            Path(f"/var/lib/rabbitmq/eventfed-{self.port}")
            if os.getuid() == 0
            else ROOT / ".run" / f"rabbitmq-{self.port}"
        )
        self.env = {**os.environ, "RABBITMQ_PORT": str(self.port), "RABBITMQ_RUN_DIR": str(self.run_dir)}
        if tls_dir is not None:
            self.env.update({"RABBITMQ_TLS_PORT": str(self.tls_port), "RABBITMQ_TLS_DIR": str(tls_dir)})
        self._script = str(ROOT / "scripts/rabbitmq")

    def url(self, tls: bool = False) -> str:
        return f"rabbit://guest:guest@127.0.0.1:{self.tls_port if tls else self.port}/"

    def start(self) -> PrivateRabbit:
        subprocess.run([self._script, "start"], env=self.env, check=True)
        return self

    def ctl(self, *args: str) -> str:
        return subprocess.run(
            [self._script, "ctl", *args], env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def stop(self) -> None:
        subprocess.run([self._script, "stop"], env=self.env, check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _free_port_pair() -> int:
    """A free port whose Erlang distribution port (scripts/rabbitmq: port + 20000) is free too."""
    import random
    import socket

    for _ in range(200):
        port = random.randint(20_000, 45_000)
        try:
            for candidate in (port, port + 20_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a private RabbitMQ node")
