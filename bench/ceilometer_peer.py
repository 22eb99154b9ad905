"""Ceilometer's notification agent, the peer an operator would otherwise run, measured on the same
notifications as eventfed, in the same run.

The agent is real Ceilometer from .venv-ceilometer (`make ceilometer-env`), started with a
configuration written here into the run's log directory: the event pipeline only, every event
published by the `notifier://` publisher through oslo.messaging's Kafka driver to a topic created
first (the agent does not check that Kafka took a record), no Keystone, Gnocchi or database. It
listens on a virtual host of its own (Ceilometer uses no pool: it consumes the shared
`notifications.*` queues), so it and eventfed never compete for a notification. Each notification
becomes one event record on Kafka (the stock event definitions give unmatched notifications
default traits). Measured like eventfed: steady 100/s for a window, CPU seconds of the agent's
process tree per notification and its peak RSS; and a backlog queued while it was stopped, then
drained, CPU per notification from the first event written to the last.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from bench import amqputil
from bench.context import Context, cpu_from_samples
from bench.kafkautil import Offsets, create_topics
from bench.procs import ROOT, tree_cpu_seconds, tree_rss, wait_until
from bench.publish import Publishers, PublisherSpec, notes_for

LOG = logging.getLogger(__name__)

AGENT = ROOT / ".venv-ceilometer" / "bin" / "ceilometer-agent-notification"
QUEUES = ("notifications.info", "versioned_notifications.info")


def write_config(directory: Path, vhost: str, bootstrap: str, topic: str) -> Path:
    """ceilometer.conf and the event pipeline; the stock event definitions."""
    directory.mkdir(parents=True, exist_ok=True)
    pipeline = directory / "event_pipeline.yaml"
    pipeline.write_text(
        "sources:\n"
        "  - name: all_events\n"
        "    events: ['*']\n"
        "    sinks: [kafka]\n"
        "sinks:\n"
        "  - name: kafka\n"
        "    publishers:\n"
        f"      - notifier://{bootstrap}?driver=kafka&topic={topic}\n"
    )
    conf = directory / "ceilometer.conf"
    conf.write_text(
        "[DEFAULT]\n"
        f"transport_url = {amqputil.transport_url(vhost)}\n"
        f"event_pipeline_cfg_file = {pipeline}\n"
        "use_stderr = true\n"
        "[notification]\n"
        "pipelines = event\n"
        "notification_control_exchanges = nova\n"
        "workers = 1\n"
        "[oslo_messaging_notifications]\n"
        "topics = notifications,versioned_notifications\n"
    )
    return conf


class Agent:
    """The agent's process tree, started and stopped by PID."""

    def __init__(self, conf: Path, log_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                [str(AGENT), "--config-file", str(conf)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            children = []
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        for child in children:
            try:
                child.wait(10)
            except psutil.TimeoutExpired:
                child.kill()
            except psutil.Error:
                continue


def _wait_for_queues(vhost: str, agent: Agent) -> None:
    def ready() -> bool:
        if agent.popen.poll() is not None:
            raise RuntimeError(f"ceilometer-agent-notification exited; see {agent.log_path}")
        return all(amqputil.queue_exists(vhost, queue) for queue in QUEUES)

    if not wait_until(ready, 120, 0.5):
        raise RuntimeError(f"ceilometer-agent-notification did not declare its queues; see {agent.log_path}")


def _settled(count: Any, expected: int, timeout: float, quiet: float = 5.0) -> int:
    """Wait until `count()` reaches `expected`, or stops growing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = count()
        if now >= expected:
            return int(now)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > quiet:
            break
        time.sleep(0.25)
    return int(count())


def run(ctx: Context, rate: int, seconds: float, backlog: int) -> dict[str, Any]:
    if not AGENT.exists():
        return {"error": f"{AGENT} not found: run `make ceilometer-env`"}
    vhost = f"{ctx.vhost}-ceilometer"
    topic = f"{ctx.prefix}ceilometer.events"
    kafka_topic = f"{topic}.sample"  # oslo's Kafka driver: target topic + "." + priority
    amqputil.create_vhost(vhost)
    create_topics(ctx.bootstrap, [kafka_topic], 1)
    conf = write_config(ctx.log_dir / "ceilometer", vhost, ctx.bootstrap, topic)
    offsets = Offsets(ctx.bootstrap)
    result: dict[str, Any] = {"version": _version(), "rate": rate}
    agent = Agent(conf, ctx.log_dir / "ceilometer-agent.log")
    rss_peak = 0
    try:
        _wait_for_queues(vhost, agent)
        # Warm-up, not reported: the Kafka producer's first metadata, the first batches.
        warm = notes_for(200, 31)
        amqputil.prefill(vhost, [], warm, 60)
        _settled(lambda: offsets.count(kafka_topic), len(warm), 60)

        before = offsets.count(kafka_topic)
        publishers = Publishers([PublisherSpec("wire", vhost, float(rate), seconds, 32)])
        try:
            publishers.start()
            started, cpu_before = time.monotonic(), tree_cpu_seconds(agent.pid)
            while publishers.sending():
                rss_peak = max(rss_peak, tree_rss(agent.pid))
                time.sleep(0.5)
            cpu = tree_cpu_seconds(agent.pid) - cpu_before
            window = time.monotonic() - started
            outcomes = publishers.finish(60)
        finally:
            publishers.stop()
        sent = sum(o["sent"] for o in outcomes)
        written = _settled(lambda: offsets.count(kafka_topic) - before, sent, 60)
        result["steady"] = {
            "sent": sent,
            "events_written": written,
            "seconds": window,
            "cores": cpu / window if window else float("nan"),
            "cpu_us_per_notification": cpu / sent * 1e6 if sent else float("nan"),
        }
        LOG.info(
            "ceilometer %d/s: %.0f us per notification, %d of %d written",
            rate,
            result["steady"]["cpu_us_per_notification"],
            written,
            sent,
        )

        agent.stop()
        notes = notes_for(backlog, 33)
        amqputil.prefill(vhost, [], notes, 60)
        before = offsets.count(kafka_topic)
        agent = Agent(conf, ctx.log_dir / "ceilometer-agent.log")
        samples: list[tuple[float, int, float]] = []

        def sample() -> bool:
            done = offsets.count(kafka_topic) - before
            samples.append((time.monotonic(), done, tree_cpu_seconds(agent.pid)))
            return done >= backlog

        drained = wait_until(sample, 60 + backlog / 100, 0.25)
        rss_peak = max(rss_peak, tree_rss(agent.pid))
        cost = cpu_from_samples(samples, samples[-1][1] if samples else backlog)
        result["drain"] = {
            "notifications": backlog,
            "events_written": samples[-1][1] if samples else 0,
            "drained": drained,
            "per_second": (samples[-1][1] / (samples[-1][0] - samples[0][0])) if len(samples) > 1 else 0.0,
            "cpu_us_per_notification": cost["cpu_us_per_record"],
        }
        result["peak_rss_mib"] = rss_peak / 2**20
        LOG.info(
            "ceilometer drain of %d: %.0f us per notification; peak RSS %.0f MiB",
            backlog,
            cost["cpu_us_per_record"],
            result["peak_rss_mib"],
        )
    finally:
        agent.stop()
        offsets.close()
        try:
            amqputil.delete_vhost(vhost)
        except Exception as exc:
            LOG.warning("could not delete virtual host %s: %s", vhost, exc)
    return result


def _version() -> str:
    metadata = list((ROOT / ".venv-ceilometer" / "lib").glob("python3*/site-packages/ceilometer-*.dist-info"))
    return metadata[0].name.removeprefix("ceilometer-").removesuffix(".dist-info") if metadata else "unknown"
