"""The `vims` section: one `eventfed listen` process serving 1, 10, 50 and 100 VIMs.

Each VIM is a RabbitMQ virtual host of its own with a real oslo.messaging Notifier publishing as
Nova does. The process starts with one VIM and grows by editing its VIMs file (the reload adds
VIMs without a restart). At each size: idle RSS, threads, TCP connections and CPU, then a steady
10/s per VIM with each VIM's e2e latency (publish -> raw topic) and the cores the listener, the
publishers and the whole machine used. The publishers are processes of their own, each a share of
the VIMs' Notifiers stamping its own send times, and the raw topic is read back (read times
stamped) in another (bench/vims_workers.py), so neither queues behind the other for one GIL. A
single-VIM listener at the same total rate is the baseline. With 10 VIMs: one VIM's permissions
revoked (its connection closed, its logins refused), then one VIM flooding from a process of its
own while the others keep 10/s; the others' p99 is compared with the same VIMs undisturbed.
Every notification sent to a working VIM must be on the raw topic.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

from bench import amqputil
from bench.context import AccountingError, Context
from bench.kafkautil import create_topics
from bench.procs import CpuMeter, Fleet, clean_env, cpu_seconds, free_port, wait_http
from bench.vims_workers import TOPIC, Publishers, RawReader

LOG = logging.getLogger(__name__)

RATE_PER_VIM = 10
STEADY_SECONDS = 12.0
IDLE_SECONDS = 15.0
# Publisher processes, each a share of the VIMs: together they keep 1,000/s on two shared cores.
PUBLISHER_PROCESSES = 4
POOL = "eventfed-bench"


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _process_figures(pid: int) -> dict[str, float]:
    process = psutil.Process(pid)
    return {
        "rss_mib": process.memory_info().rss / 2**20,
        "threads": process.num_threads(),
        "connections": len(process.net_connections(kind="tcp")),
    }


def _idle_cores(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def _steady(
    publishers: Publishers,
    vims: list[str],
    rate_per_vim: float,
    seconds: float,
    pids: dict[str, int],
) -> dict[str, float]:
    """`rate_per_vim` on each of `vims`; the rate asked and reached, and the cores each process
    (the listener, the reader, the publishers together and the busiest one, the whole machine)
    used meanwhile."""
    publisher_pids = {f"publisher {i}": pid for i, pid in enumerate(publishers.pids)}
    meter = CpuMeter({**pids, **publisher_pids}).start()
    achieved = publishers.steady(vims, rate_per_vim, seconds)
    cores = meter.stop()
    own = [cores[name] for name in publisher_pids]
    return {
        "asked_rate": rate_per_vim * len(vims),
        "achieved_rate": achieved,
        **{f"{name}_cores": cores[name] for name in pids},
        "publisher_cores": sum(own),
        "publisher_cores_max": max(own),
        "machine_cores": cores["machine (all processes)"],
    }


def _latency(latencies: dict[str, list[float]], vims: list[str]) -> dict[str, float]:
    per_vim = [_p(latencies.get(vim, []), 0.99) * 1000 for vim in vims if latencies.get(vim)]
    every = [x * 1000 for vim in vims for x in latencies.get(vim, [])]
    return {
        "p50_ms": _p(every, 0.50),
        "p99_ms": _p(every, 0.99),
        "per_vim_p99_median_ms": _p(per_vim, 0.5),
        "per_vim_p99_max_ms": max(per_vim) if per_vim else float("nan"),
        "received": len(every),
    }


class VimsListener:
    """The listener process under test and its VIMs file."""

    def __init__(self, ctx: Context, fleet: Fleet, raw_topic: str, vhosts: dict[str, str]) -> None:
        self.vhosts = vhosts
        self.file = ctx.log_dir / "vims.yaml"
        self.port = free_port()
        self.write([])
        env = clean_env(
            EVENTFED_VIMS_FILE=str(self.file),
            EVENTFED_VIMS_RELOAD_SECONDS="1",
            EVENTFED_RAW_TOPIC=raw_topic,
            EVENTFED_DLQ_TOPIC=f"{ctx.prefix}vims.dlq",
            EVENTFED_KAFKA_BOOTSTRAP_SERVERS=ctx.bootstrap,
            EVENTFED_METRICS_PORT=str(self.port),
            EVENTFED_LOG_FORMAT="json",
        )
        self.proc = fleet.start("listener (VIMs file)", ["listen"], env)
        wait_http(f"http://127.0.0.1:{self.port}/readyz", 60, self.proc)

    def write(self, vims: list[str]) -> None:
        document = {
            "defaults": {"topics": [TOPIC], "pool": POOL},
            "vims": [
                {"vim_id": vim, "transport_url": amqputil.transport_url(self.vhosts[vim])} for vim in vims
            ],
        }
        staged = self.file.with_suffix(".new")
        staged.write_text(json.dumps(document))
        staged.replace(self.file)

    def readiness(self) -> str:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as response:
                return str(json.loads(response.read())["reason"])
        except urllib.error.HTTPError as exc:
            return str(json.loads(exc.read())["reason"])

    def wait_consuming(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.readiness() == f"consuming: all {count} VIMs":
                return
            time.sleep(0.5)
        raise RuntimeError(f"not consuming from {count} VIMs in {timeout}s: {self.readiness()}")


def _flooder(vhost: str, vim: str, first_seq: int, seconds: float, log_dir: Path) -> subprocess.Popen[bytes]:
    """A process of its own publishing to one VIM as fast as it can for `seconds`, numbering from
    `first_seq`; prints how many it sent."""
    code = f"""
import time
from tests.support.rabbit import NovaNotifier
from bench import amqputil
n = NovaNotifier(amqputil.transport_url({vhost!r}), {TOPIC!r})
end = time.monotonic() + {seconds}
seq = {first_seq}
while time.monotonic() < end:
    n.send("compute.instance.update", {{"instance_id": "vm-flood-%d" % (seq % 50), "vim": {vim!r}, "seq": seq,
           "sent": time.time()}})
    seq += 1
print(seq - {first_seq}, flush=True)
n.close()
"""
    with open(log_dir / "flooder.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=Path(__file__).resolve().parents[1],
        )


def run(ctx: Context) -> dict[str, Any]:
    from tests.support.kafka import read_notifications

    sizes = (1, 5) if ctx.quick else (1, 10, 50, 100)
    steady_seconds = 5.0 if ctx.quick else STEADY_SECONDS
    idle_seconds = 5.0 if ctx.quick else IDLE_SECONDS
    vims = [f"benchvims_{ctx.run_id}-{i:03d}" for i in range(max(sizes))]
    vhosts = {vim: f"eventfed-bench-{ctx.run_id}-vim{i:03d}" for i, vim in enumerate(vims)}
    raw_topic = f"{ctx.prefix}vims.raw"
    single_topic = f"{ctx.prefix}vims.single.raw"
    create_topics(ctx.bootstrap, [raw_topic, single_topic], 8)
    amqputil.create_vhosts(list(vhosts.values()))
    publishers = Publishers(PUBLISHER_PROCESSES, ctx.log_dir)
    results: dict[str, Any] = {
        "sizes": list(sizes),
        "rate_per_vim": RATE_PER_VIM,
        "steady_seconds": steady_seconds,
        "publisher_processes": PUBLISHER_PROCESSES,
    }
    try:
        publishers.add(vhosts)
        with Fleet(ctx.log_dir, ctx.sampler) as fleet:
            # The baseline: a single-VIM listener at each total rate the VIMs file process gets.
            single = fleet.start(
                "listener (one VIM)",
                ["listen"],
                clean_env(
                    EVENTFED_VIM_ID=vims[0],
                    EVENTFED_TRANSPORT_URL=amqputil.transport_url(vhosts[vims[0]]),
                    EVENTFED_TOPICS=TOPIC,
                    EVENTFED_POOL=POOL + "-single",
                    EVENTFED_RAW_TOPIC=single_topic,
                    EVENTFED_DLQ_TOPIC=f"{ctx.prefix}vims.dlq",
                    EVENTFED_KAFKA_BOOTSTRAP_SERVERS=ctx.bootstrap,
                    EVENTFED_METRICS_PORT=str(single_port := free_port()),
                    EVENTFED_LOG_FORMAT="json",
                ),
            )
            wait_http(f"http://127.0.0.1:{single_port}/readyz", 60, single)
            time.sleep(3)
            results["single_vim_idle"] = {
                **_process_figures(single.pid),
                "idle_cores": _idle_cores(single.pid, idle_seconds),
            }
            reader = RawReader(ctx.bootstrap, single_topic, ctx.log_dir)
            baseline: dict[int, dict[str, float]] = {}
            for size in sizes:
                total = RATE_PER_VIM * size
                # One VIM at the total rate: the same notifications, one queue.
                run = _steady(
                    publishers,
                    [vims[0]],
                    total,
                    steady_seconds,
                    {"listener": single.pid, "reader": reader.pid},
                )
                time.sleep(1)
                baseline[size] = {**_latency(reader.take(), [vims[0]]), **run}
            reader.stop()
            fleet.stop(single)
            results["single_vim_baseline"] = {str(size): figures for size, figures in baseline.items()}

            listener = VimsListener(ctx, fleet, raw_topic, vhosts)
            pid = listener.proc.pid
            time.sleep(2)
            results["no_vims"] = _process_figures(pid)
            reader = RawReader(ctx.bootstrap, raw_topic, ctx.log_dir)
            measured = {"listener": pid, "reader": reader.pid}
            steps: list[dict[str, Any]] = []
            for size in sizes:
                served = vims[:size]
                listener.write(served)
                listener.wait_consuming(size)
                time.sleep(3)
                step: dict[str, Any] = {"vims": size, **_process_figures(pid)}
                step["idle_cores"] = _idle_cores(pid, idle_seconds)
                step["idle_cores_per_vim"] = step["idle_cores"] / size
                reader.take()
                step.update(_steady(publishers, served, RATE_PER_VIM, steady_seconds, measured))
                step["threads_steady"] = _process_figures(pid)["threads"]
                time.sleep(1.5)
                step["steady"] = _latency(reader.take(), served)
                step["baseline_p99_ms"] = baseline[size]["p99_ms"]
                step["per_vim_p99_vs_single"] = (
                    step["steady"]["per_vim_p99_median_ms"] / baseline[size]["p99_ms"]
                )
                LOG.info(
                    "vims %d: rss %.1f MiB, %d threads, idle %.4f cores, p99 %.1f ms (single VIM %.1f ms), "
                    "%.0f/s of %.0f/s, listener %.2f cores, publishers %.2f, machine %.2f",
                    size,
                    step["rss_mib"],
                    step["threads"],
                    step["idle_cores"],
                    step["steady"]["p99_ms"],
                    baseline[size]["p99_ms"],
                    step["achieved_rate"],
                    step["asked_rate"],
                    step["listener_cores"],
                    step["publisher_cores"],
                    step["machine_cores"],
                )
                steps.append(step)
            results["steps"] = steps
            first, last = steps[0], steps[-1]
            added = last["vims"] - first["vims"]
            results["rss_mib_per_vim"] = (last["rss_mib"] - first["rss_mib"]) / added if added else None
            results["threads_per_vim"] = (last["threads"] - first["threads"]) / added if added else None
            results["idle_cores_per_vim"] = last["idle_cores_per_vim"]
            results["largest"] = last["vims"]
            results["targets"] = {
                "rss_mib": 90 + 2 * last["vims"],
                "rss_met": last["rss_mib"] <= 90 + 2 * last["vims"],
                "idle_cores_per_vim": 0.002,
                "idle_met": last["idle_cores_per_vim"] < 0.002,
                "p99_within_20pct_met": last["per_vim_p99_vs_single"] <= 1.2,
            }

            # Isolation, among 10 VIMs (or the quick run's few): the undisturbed figures first.
            group = vims[: min(10, max(sizes))]
            listener.write(group)
            listener.wait_consuming(len(group))
            time.sleep(2)
            reader.take()
            publishers.steady(group, RATE_PER_VIM, steady_seconds)
            time.sleep(1.5)
            calm = _latency(reader.take(), group[1:-1])
            blocked_vim, flooding_vim, others = group[0], group[-1], group[1:-1]
            amqputil.rabbitmqctl("clear_permissions", "-p", vhosts[blocked_vim], "guest")
            _close_connections(vhosts[blocked_vim])
            time.sleep(2)
            publishers.steady([*others, flooding_vim], RATE_PER_VIM, steady_seconds)
            time.sleep(1.5)
            blocked = _latency(reader.take(), others)
            blocked["readiness"] = listener.readiness()
            flooder = _flooder(
                vhosts[flooding_vim],
                flooding_vim,
                publishers.sent()[flooding_vim],
                steady_seconds + 1,
                ctx.log_dir,
            )
            time.sleep(0.5)
            publishers.steady(others, RATE_PER_VIM, steady_seconds)
            flood_sent = int((flooder.communicate(timeout=120)[0] or b"0").split()[-1])
            time.sleep(3)
            flooded = _latency(reader.take(), others)
            flooded["flood_sent"] = flood_sent
            results["isolation"] = {
                "vims": len(group),
                "undisturbed": calm,
                "one_blocked": blocked,
                "one_flooding": flooded,
                "blocked_p99_vs_undisturbed": blocked["p99_ms"] / calm["p99_ms"],
                "flooding_p99_vs_undisturbed": flooded["p99_ms"] / calm["p99_ms"],
            }
            # Nothing lost: every notification sent to a working VIM is on the raw topic.
            time.sleep(3)
            reader.stop()
            sent = publishers.sent()
            expected = {vim: sent.get(vim, 0) for vim in vims if vim != blocked_vim}
            expected[flooding_vim] = sent.get(flooding_vim, 0) + flood_sent
            got: dict[str, set[int]] = defaultdict(set)
            for record in read_notifications(ctx.bootstrap, raw_topic, sum(expected.values()), timeout=120):
                payload = json.loads(record.value())["payload"]
                got[payload["vim"]].add(payload["seq"])
            missing = {vim: count - len(got[vim] & set(range(count))) for vim, count in expected.items()}
            results["missing"] = sum(missing.values())
            if results["missing"]:
                raise AccountingError(
                    f"{results['missing']} notifications missing from the raw topic: {missing}"
                )
    finally:
        publishers.close()
        try:
            amqputil.delete_vhosts(list(vhosts.values()))
        except Exception as exc:
            LOG.warning("could not delete the VIMs' virtual hosts: %s", exc)
    return results


def _close_connections(vhost: str) -> None:
    """Close the connections of one virtual host (its listener's), as RabbitMQ does to a user
    whose access is revoked."""
    out = amqputil.rabbitmqctl("list_connections", "-q", "--no-table-headers", "pid", "vhost")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == vhost:
            amqputil.rabbitmqctl("close_connection", parts[0], "access revoked (bench)")
