"""The `vims` section's publishers and raw-topic reader, each a process of its own.

The listener under test shares two cores with them: a publisher that paced every VIM's sends
from one thread, and a reader that stamped read times from another thread of the same process,
would queue for one GIL and put their own delays into the latencies. So each publisher process
owns a share of the VIMs (a real oslo Notifier each, its own send-time stamps and sequence
numbers) and the reader has a process of its own.

Both speak JSON lines: a command on stdin, one answer on stdout (oslo and Kafka log to stderr).

    python -m bench.vims_workers publish   {"add": {vim: vhost}} | {"steady": {...}} | {"sent": 1}
    python -m bench.vims_workers read BOOTSTRAP TOPIC   {"take": 1}
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import IO, Any

TOPIC = "notifications"
ROOT = Path(__file__).resolve().parents[1]


def _answer(out: IO[str], document: Any) -> None:
    out.write(json.dumps(document) + "\n")
    out.flush()


def _publish(commands: IO[str], out: IO[str]) -> None:
    from bench import amqputil
    from tests.support.rabbit import NovaNotifier

    notifiers: dict[str, NovaNotifier] = {}
    sent: dict[str, int] = defaultdict(int)
    for line in commands:
        command = json.loads(line)
        if "add" in command:
            for vim, vhost in command["add"].items():
                notifiers[vim] = NovaNotifier(amqputil.transport_url(vhost), TOPIC)
            _answer(out, {"added": len(command["add"])})
        elif "steady" in command:
            steady = command["steady"]
            vims: list[str] = steady["vims"]
            interval = 1.0 / (steady["rate_per_vim"] * len(vims))
            # Every publisher process starts at the same wall-clock instant.
            time.sleep(max(0.0, steady["start_at"] - time.time()))
            started = time.monotonic()
            count = 0
            while time.monotonic() - started < steady["seconds"]:
                vim = vims[count % len(vims)]
                seq = sent[vim]
                notifiers[vim].send(
                    "compute.instance.update",
                    {"instance_id": f"vm-{vim}-{seq % 10}", "vim": vim, "seq": seq, "sent": time.time()},
                )
                sent[vim] += 1
                count += 1
                delay = started + count * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            _answer(out, {"count": count, "seconds": time.monotonic() - started})
        elif "sent" in command:
            _answer(out, dict(sent))
    for notifier in notifiers.values():
        notifier.close()


def _read(bootstrap: str, topic: str, commands: IO[str], out: IO[str]) -> None:
    from confluent_kafka import Consumer, TopicPartition

    from schemas.raw import unpack

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-reader",
            "enable.auto.commit": False,
            # A record is timed when it is read: the fetch must not wait for company.
            "fetch.wait.max.ms": 5,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, -1) for p in metadata.topics[topic].partitions])  # the end
    consumer.poll(0.5)  # resolves the end offsets before anything is published
    latencies: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    stopping = threading.Event()

    def take_commands() -> None:
        nonlocal latencies
        for line in commands:
            if "take" in json.loads(line):
                with lock:
                    taken, latencies = latencies, defaultdict(list)
                _answer(out, taken)
        stopping.set()

    threading.Thread(target=take_commands, name="commands", daemon=True).start()
    _answer(out, {"ready": True})
    while not stopping.is_set():
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            now = time.time()
            for single in unpack(message.key(), message.value() or b"", message.headers()):
                payload = json.loads(single.value)["payload"]
                with lock:
                    latencies[payload["vim"]].append(now - payload["sent"])
    consumer.close()


class Worker:
    """One worker process, driven by JSON lines."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.vims_workers", *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
                text=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench worker {self.proc.args} exited with {self.proc.wait(10)}")
        return json.loads(line)

    def ask(self, command: dict[str, Any]) -> Any:
        self.send(command)
        return self.answer()

    def close(self, timeout: float = 30) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class Publishers:
    """`processes` publisher processes, each owning every `processes`-th VIM's Notifier."""

    def __init__(self, processes: int, log_dir: Path) -> None:
        self.workers = [Worker(["publish"], log_dir / f"publisher-{i}.log") for i in range(processes)]
        self.owner: dict[str, Worker] = {}

    @property
    def pids(self) -> list[int]:
        return [worker.pid for worker in self.workers]

    def add(self, vhosts: dict[str, str]) -> None:
        shares: dict[int, dict[str, str]] = defaultdict(dict)
        for i, (vim, vhost) in enumerate(vhosts.items()):
            shares[i % len(self.workers)][vim] = vhost
            self.owner[vim] = self.workers[i % len(self.workers)]
        for i, share in shares.items():
            self.workers[i].send({"add": share})
        for i in shares:
            self.workers[i].answer()

    def steady(self, vims: list[str], rate_per_vim: float, seconds: float) -> float:
        """Each VIM at `rate_per_vim` from its own process, all processes at once; the achieved
        total rate (sent over the slowest process's time)."""
        shares: dict[int, list[str]] = defaultdict(list)
        for vim in vims:
            shares[self.workers.index(self.owner[vim])].append(vim)
        start_at = time.time() + 0.3
        for i, share in shares.items():
            self.workers[i].send(
                {
                    "steady": {
                        "vims": share,
                        "rate_per_vim": rate_per_vim,
                        "seconds": seconds,
                        "start_at": start_at,
                    }
                }
            )
        answers = [self.workers[i].answer() for i in shares]
        return sum(a["count"] for a in answers) / max(a["seconds"] for a in answers)

    def sent(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for worker in self.workers:
            counts.update(worker.ask({"sent": 1}))
        return counts

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


class RawReader:
    """The raw topic read from its end in a process of its own: each notification's latency, by VIM."""

    def __init__(self, bootstrap: str, topic: str, log_dir: Path) -> None:
        self.worker = Worker(["read", bootstrap, topic], log_dir / f"reader-{topic}.log")
        self.worker.answer()  # ready: positioned at the end

    @property
    def pid(self) -> int:
        return self.worker.pid

    def take(self) -> dict[str, list[float]]:
        return dict(self.worker.ask({"take": 1}))

    def stop(self) -> None:
        self.worker.close()


def main(argv: list[str]) -> None:
    if argv[:1] == ["publish"]:
        _publish(sys.stdin, sys.stdout)
    elif argv[:1] == ["read"] and len(argv) == 3:
        _read(argv[1], argv[2], sys.stdin, sys.stdout)
    else:
        sys.exit(f"usage: python -m bench.vims_workers publish | read BOOTSTRAP TOPIC (got {argv})")


if __name__ == "__main__":
    main(sys.argv[1:])
