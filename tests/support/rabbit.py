"""A Notifier configured as Nova is, and a look at what RabbitMQ holds."""

from __future__ import annotations

import os
import random
import shutil
import socket
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


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class PrivateRabbitMQ:
    """A RabbitMQ node of one's own on a free port, for tests that stop or restart it: started,
    stopped and asked through scripts/rabbitmq (RABBITMQ_PORT), its data removed at the end."""

    def __init__(self, log_path: Path, rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        # scripts/rabbitmq puts the node's distribution port at RABBITMQ_PORT + 20000.
        for _ in range(200):
            port = rng.randrange(20_000, 40_000)
            if _port_free(port) and _port_free(port + 20_000):
                break
        else:
            raise RuntimeError("no free pair of ports for RabbitMQ")
        self.port = port
        self.env = {**os.environ, "RABBITMQ_PORT": str(port)}
        self.log_path = log_path

    def script(self, *args: str) -> str:
        with open(self.log_path, "ab") as log:
            result = subprocess.run(
                [str(ROOT / "scripts/rabbitmq"), *args],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                timeout=300,
            )
        if result.returncode != 0:
            raise RuntimeError(f"scripts/rabbitmq {' '.join(args[:2])} failed (see {self.log_path})")
        return result.stdout.decode(errors="replace")

    def start(self) -> None:
        self.script("start")

    def stop(self) -> None:
        self.script("stop")

    def add_vhost(self, vhost: str) -> None:
        self.script("ctl", "add_vhost", vhost)
        self.script("ctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

    def url(self, vhost: str) -> str:
        return f"rabbit://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def queue_depths(self, vhost: str) -> dict[str, int]:
        """queue name -> messages (ready and unacknowledged) in a virtual host."""
        out = self.script("ctl", "list_queues", "-p", vhost, "-q", "--no-table-headers", "name", "messages")
        return {p[0]: int(p[1]) for p in (line.split() for line in out.splitlines()) if len(p) == 2}

    def remove_data(self) -> None:
        """The node's files (scripts/rabbitmq's layout), once it is stopped."""
        folder = (
            Path(f"/var/lib/rabbitmq/eventfed-{self.port}")
            if os.getuid() == 0
            else ROOT / ".run" / f"rabbitmq-{self.port}"
        )
        shutil.rmtree(folder, ignore_errors=True)
