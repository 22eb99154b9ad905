"""Real Ceilometer 27 for tests: its notification agent as a process (started and stopped by PID),
configured in a temporary directory for one RabbitMQ vhost; polled-meter samples published by
Ceilometer's own code (tests/real_ceilometer/publish_samples.py); and a capture queue on
Ceilometer's exchange, to know what it really published.

The venv is `.venv-ceilometer` (`make ceilometer-env`); EVENTFED_TEST_CEILOMETER_PYTHON points
elsewhere. No Keystone, Gnocchi or database: the meter pipeline with the `notifier://` publisher.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.processes import ROOT

CEILOMETER_VENV = Path(os.environ.get("EVENTFED_TEST_CEILOMETER_VENV", str(ROOT / ".venv-ceilometer")))
CEILOMETER_PYTHON = CEILOMETER_VENV / "bin" / "python"
PUBLISH = ROOT / "tests" / "real_ceilometer" / "publish_samples.py"
TELEMETRY_SECRET = "eventfed-test-secret"

PIPELINE = """---
sources:
    - name: meter_source
      meters:
          - "*"
      sinks:
          - meter_sink
sinks:
    - name: meter_sink
      publishers:
          - notifier://
"""


def meters_dir() -> Path:
    found = sorted(CEILOMETER_VENV.glob("lib/python3*/site-packages/ceilometer/data/meters.d"))
    assert found, f"no Ceilometer in {CEILOMETER_VENV}: run `make ceilometer-env`"
    return found[0]


def write_config(directory: Path, transport_url: str) -> Path:
    """ceilometer.conf (and its pipeline files) for one vhost: the meter pipeline only, reading
    Nova's legacy notifications and the polling agents' samples, publishing with notifier://."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pipeline.yaml").write_text(PIPELINE)
    # The event pipeline is not loaded (pipelines = meter), but its file must exist.
    (directory / "event_pipeline.yaml").write_text("---\nsources: []\nsinks: []\n")
    conf = directory / "ceilometer.conf"
    conf.write_text(
        f"""[DEFAULT]
host = ceilometer-test
transport_url = {transport_url}
pipeline_cfg_file = {directory / "pipeline.yaml"}
event_pipeline_cfg_file = {directory / "event_pipeline.yaml"}

[notification]
pipelines = meter
notification_control_exchanges = nova
notification_control_exchanges = ceilometer
workers = 1
batch_size = 1

[publisher]
telemetry_secret = {TELEMETRY_SECRET}

[meter]
meter_definitions_dirs = {meters_dir()}

[oslo_messaging_notifications]
topics = notifications
"""
    )
    return conf


class NotificationAgent:
    """`ceilometer-agent-notification` as a process."""

    def __init__(self, conf: Path, log_path: Path) -> None:
        self.conf = conf
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> NotificationAgent:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [str(CEILOMETER_VENV / "bin" / "ceilometer-agent-notification"), "--config-file", str(self.conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Its main process and workers (one process group of its own), by PID."""
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)


def publish_samples(conf: Path, readings: list[dict[str, Any]], path: str = "polling") -> list[str]:
    """Send readings with Ceilometer's own code; the message_id of each sample sent."""
    done = subprocess.run(
        [str(CEILOMETER_PYTHON), str(PUBLISH), "--config-file", str(conf), "--path", path],
        input=json.dumps(readings).encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    lines = done.stdout.decode(errors="replace").splitlines()
    return [line.split()[1] for line in lines if line.startswith("SAMPLE ")]


class SampleCapture:
    """A queue of the test's own on Ceilometer's exchange, bound to `metering.sample`: every
    sample the notification agent published, as published."""

    def __init__(self, amqp_url: str, name: str) -> None:
        import kombu

        self.connection = kombu.Connection(amqp_url)
        exchange = kombu.Exchange("ceilometer", "topic", durable=False)
        self.queue = kombu.Queue(
            name, exchange, routing_key="metering.sample", durable=False, auto_delete=False
        )
        self.queue(self.connection.default_channel).declare()
        self.samples: list[dict[str, Any]] = []

    def drain(self, quiet: float = 1.0, timeout: float = 60) -> list[dict[str, Any]]:
        """Every sample published so far (the queue read until it stays empty for `quiet` s)."""
        deadline = time.monotonic() + timeout
        empty_since: float | None = None
        bound = self.queue(self.connection.default_channel)
        while time.monotonic() < deadline:
            message = bound.get(no_ack=True)
            if message is None:
                empty_since = empty_since or time.monotonic()
                if time.monotonic() - empty_since >= quiet:
                    break
                time.sleep(0.05)
                continue
            empty_since = None
            envelope = json.loads(message.body)
            decoded = json.loads(envelope["oslo.message"])
            self.samples.extend(decoded["payload"])
        return self.samples

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.queue(self.connection.default_channel).delete()
        self.connection.release()


@contextlib.contextmanager
def running_agent(tmp: Path, transport_url: str) -> Iterator[tuple[Path, NotificationAgent]]:
    conf = write_config(tmp / "ceilometer", transport_url)
    agent = NotificationAgent(conf, tmp / "ceilometer-agent.log").start()
    try:
        yield conf, agent
    finally:
        agent.stop()
