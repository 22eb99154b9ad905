"""`eventfed listen` serving several VIMs from a VIMs file, against the real RabbitMQ and Kafka:
a virtual host per VIM, real oslo Notifiers, the raw topic read back."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kafka import delete_topics_containing, read_notifications
from tests.support.processes import ROOT, Proc, clean_env, free_port, wait_http
from tests.support.rabbit import NovaNotifier
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

RABBITMQ = str(ROOT / "scripts" / "rabbitmq")


def ctl(*args: str, check: bool = True) -> str:
    return subprocess.run(
        [RABBITMQ, "ctl", *args], capture_output=True, text=True, check=check, timeout=60
    ).stdout


def queue_depth(vhost: str, queue: str) -> tuple[int, int] | None:
    """(ready, unacknowledged) of a queue of `vhost`, None when it is not there."""
    out = ctl(
        "list_queues",
        "-p",
        vhost,
        "-q",
        "--no-table-headers",
        "name",
        "messages_ready",
        "messages_unacknowledged",
        check=False,
    )
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == queue:
            return int(parts[1]), int(parts[2])
    return None


class VimsRun:
    """One listener process serving VIMs of its own virtual hosts, its VIMs file rewritten at will."""

    def __init__(self, tmp_path: Path, unique: str, bootstrap: str, names: list[str]) -> None:
        self.unique = unique
        self.tmp_path = tmp_path
        self.bootstrap = bootstrap
        self.topic = f"notifications_{unique}"
        self.pool = f"eventfed-{unique}"
        self.raw_topic = f"test.raw.{unique}"
        self.vims_file = tmp_path / "vims.yaml"
        self.metrics_port = free_port()
        self.vhosts: dict[str, str] = {}
        self.notifiers: dict[str, NovaNotifier] = {}
        for name in names:
            self.add_vhost(name)
        self.write(names)
        self.env = clean_env(
            EVENTFED_VIMS_FILE=str(self.vims_file),
            EVENTFED_VIMS_RELOAD_SECONDS="0.5",
            EVENTFED_RAW_TOPIC=self.raw_topic,
            EVENTFED_DLQ_TOPIC=f"test.dlq.{unique}",
            EVENTFED_PARTITIONS="4",
            EVENTFED_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            EVENTFED_METRICS_PORT=str(self.metrics_port),
            EVENTFED_BATCH_TIMEOUT="0.05",
            EVENTFED_RETRY_BACKOFF_MAX="2",
        )
        self.proc: Proc | None = None

    def vim_id(self, name: str) -> str:
        return f"owner_{name}-{self.unique}"

    def url(self, name: str) -> str:
        return f"rabbit://guest:guest@127.0.0.1:5672/{self.vhosts[name]}"

    def add_vhost(self, name: str) -> None:
        vhost = f"eventfed-{self.unique}-{name}"
        ctl("add_vhost", vhost)
        ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        self.vhosts[name] = vhost

    def write(self, names: list[str]) -> None:
        """The VIMs file listing `names`; one VIM's URL in a secret file, as a mounted Secret."""
        secret = self.tmp_path / "transport-url"
        entries = []
        for index, name in enumerate(names):
            if index == 0:
                secret.write_text(self.url(name) + "\n")
                entries.append({"vim_id": self.vim_id(name), "transport_url_file": str(secret)})
            else:
                entries.append({"vim_id": self.vim_id(name), "transport_url": self.url(name)})
        document = {"defaults": {"topics": [self.topic], "pool": self.pool}, "vims": entries}
        # Replaced in one step, as a ConfigMap update is: a reload never reads half a file.
        staged = self.tmp_path / "vims.yaml.new"
        staged.write_text(json.dumps(document))
        staged.replace(self.vims_file)

    def start(self) -> Proc:
        self.proc = Proc(["listen"], self.env, self.tmp_path / f"listen-{time.monotonic_ns()}.log")
        wait_http(f"http://127.0.0.1:{self.metrics_port}/readyz", 60, self.proc)
        return self.proc

    def wait_queue(self, name: str) -> None:
        wait_until(lambda: queue_depth(self.vhosts[name], self.pool) is not None, 30, f"{name}'s queue")
        # Made here, in the test's main thread: a thread that makes an oslo Notifier does not end.
        self.notifier(name)

    def notifier(self, name: str) -> NovaNotifier:
        if name not in self.notifiers:
            self.notifiers[name] = NovaNotifier(self.url(name), self.topic)
        return self.notifiers[name]

    def send(self, name: str, start: int, count: int) -> list[str]:
        """`count` notifications numbered from `start`, in order, for one VM of VIM `name`."""
        vm = f"00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}"
        notifier = self.notifier(name)
        for seq in range(start, start + count):
            notifier.send("compute.instance.update", {"instance_id": vm, "seq": seq, "vim": name})
        return [f"{name}:{seq}" for seq in range(start, start + count)]

    def raw_by_vim(self, expected: int, timeout: float = 60) -> dict[str, list[int]]:
        """Each VIM's sequence numbers, in the order the raw topic holds them."""
        by_vim: dict[str, list[int]] = defaultdict(list)
        for record in read_notifications(self.bootstrap, self.raw_topic, expected, timeout=timeout):
            value = json.loads(record.value())
            assert value["vim_id"] == self.vim_id(value["payload"]["vim"])
            by_vim[value["payload"]["vim"]].append(value["payload"]["seq"])
        return by_vim

    def readyz(self) -> dict:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def readyz_status(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def close(self) -> None:
        if self.proc is not None and self.proc.alive():
            self.proc.terminate()
        for notifier in self.notifiers.values():
            notifier.close()
        for vhost in self.vhosts.values():
            ctl("delete_vhost", vhost, check=False)
        delete_topics_containing(self.bootstrap, self.unique)


@pytest.fixture
def vims_factory(tmp_path, unique, kafka_bootstrap) -> Iterator:
    runs: list[VimsRun] = []

    def make(names: list[str]) -> VimsRun:
        run = VimsRun(tmp_path, unique, kafka_bootstrap, names)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.close()


def test_three_vims_in_one_process_each_in_order_with_its_vim_id(vims_factory):
    run = vims_factory(["a", "b", "c"])
    run.start()
    for name in "abc":
        run.wait_queue(name)
    for name in "abc":
        run.send(name, 0, 100)
    by_vim = run.raw_by_vim(300)
    assert {name: seqs for name, seqs in by_vim.items()} == {name: list(range(100)) for name in "abc"}
    assert run.readyz() == {"ready": True, "reason": "consuming: all 3 VIMs"}
    metrics = run.metrics()
    for name in "abc":
        assert f'eventfed_listener_records_written_total{{vim="{run.vim_id(name)}"}} 100.0' in metrics
    # Every batch was acked once written: nothing left on any queue.
    for name in "abc":
        wait_until(lambda name=name: queue_depth(run.vhosts[name], run.pool) == (0, 0), 10, f"{name} drained")


def test_a_deleted_virtual_host_stops_only_its_vim(vims_factory):
    run = vims_factory(["a", "b", "c"])
    run.start()
    for name in "abc":
        run.wait_queue(name)
    sent: Counter[str] = Counter()
    stop = threading.Event()

    def keep_sending(name: str) -> None:
        while not stop.is_set() and sent[name] < 600:
            run.send(name, sent[name], 10)
            sent[name] += 10
            time.sleep(0.02)

    senders = [threading.Thread(target=keep_sending, args=(name,)) for name in "ac"]
    for sender in senders:
        sender.start()
    run.send("b", 0, 50)
    time.sleep(1.0)
    assert run.readyz() == {"ready": True, "reason": "consuming: all 3 VIMs"}
    ctl("delete_vhost", run.vhosts["b"])
    # b had been consuming: readiness names it once its connection is gone, and says why; the
    # process stays ready for the two others.
    b, vhost_b = run.vim_id("b"), run.vhosts["b"]
    named_b = (
        f"consuming: 2 of 3 VIMs; not consuming: {b}: connection to RabbitMQ lost: "
        f"RabbitMQ has no virtual host '{vhost_b}'"
    )
    wait_until(lambda: run.readyz()["reason"].startswith(named_b), 15, "b named in /readyz")
    assert run.readyz_status()[0] == 200
    for sender in senders:
        sender.join(60)
    stop.set()
    assert sent["a"] == sent["c"] == 600
    by_vim = run.raw_by_vim(600 + 600 + 50)
    # The two other VIMs lost nothing, in order; b's notifications before the deletion were in
    # Kafka before it went.
    assert by_vim["a"] == list(range(600))
    assert by_vim["c"] == list(range(600))
    assert by_vim["b"] == list(range(50))
    status, readiness = run.readyz_status()
    assert status == 200 and readiness["reason"].startswith(named_b)
    assert run.proc is not None and run.proc.alive()
    assert (
        f'eventfed_listener_rabbit_connect_failures_total{{kind="virtual_host",vim="{b}"}}' in run.metrics()
    )
    # The virtual host restored: oslo's reconnection declares b's queue again, the name goes.
    run.add_vhost("b")
    wait_until(lambda: run.readyz() == {"ready": True, "reason": "consuming: all 3 VIMs"}, 30, "b back")
    run.notifiers.pop("b").close()
    run.wait_queue("b")
    # And all three flow after it.
    run.send("a", 600, 20)
    run.send("b", 50, 20)
    run.send("c", 600, 20)
    by_vim = run.raw_by_vim(620 + 620 + 70)
    assert by_vim["a"] == list(range(620)) and by_vim["c"] == list(range(620))
    assert by_vim["b"] == list(range(70))


def test_vims_added_and_removed_by_editing_the_file(vims_factory):
    run = vims_factory(["a", "b"])
    proc = run.start()
    run.wait_queue("a")
    run.wait_queue("b")
    run.send("a", 0, 50)
    run.send("b", 0, 50)
    run.add_vhost("c")

    def keep_sending_b() -> None:
        for i in range(30):
            run.send("b", 50 + 10 * i, 10)
            time.sleep(0.05)

    sending = threading.Thread(target=keep_sending_b)
    sending.start()
    # a removed, c added, b untouched while it keeps receiving.
    run.write(["b", "c"])
    run.wait_queue("c")
    wait_until(lambda: 'vim="owner_a-' not in run.metrics(), 30, "a's series gone")
    run.send("c", 0, 50)
    sending.join(60)
    by_vim = run.raw_by_vim(50 + 350 + 50)
    assert by_vim["a"] == list(range(50))
    assert by_vim["b"] == list(range(350))
    assert by_vim["c"] == list(range(50))
    # a stopped cleanly: what it had was acked, not left unacknowledged or requeued.
    assert queue_depth(run.vhosts["a"], run.pool) in ((0, 0), None)
    assert proc.alive() and run.proc is proc
    assert run.readyz() == {"ready": True, "reason": "consuming: all 2 VIMs"}
    assert "VIMs file reloaded: 2 VIMs; added " + run.vim_id("c") in proc.log()


def test_a_bad_vims_file_is_refused_at_start_and_rejected_on_reload(vims_factory, tmp_path):
    run = vims_factory(["a"])
    good = run.vims_file.read_text()
    run.vims_file.write_text(
        json.dumps({"vims": [{"vim_id": "x_y", "transport_url": "rabbit://h/", "pol": 1}]})
    )
    refused = Proc(["listen"], run.env, tmp_path / "refused.log")
    assert refused.popen.wait(60) == 2
    assert "vim x_y: unknown key 'pol'" in refused.log()
    run.vims_file.write_text(good)
    proc = run.start()
    run.wait_queue("a")
    run.vims_file.write_text(
        json.dumps({"vims": [{"vim_id": run.vim_id("a"), "transport_url_file": "/nonexistent"}]})
    )
    wait_until(lambda: "rejected the VIMs file" in proc.log(), 20, "rejected")
    run.send("a", 0, 20)
    assert run.raw_by_vim(20)["a"] == list(range(20))
    assert proc.log().count("rejected the VIMs file") == 1


def test_sigkill_mid_flow_loses_nothing_on_any_vim(vims_factory):
    run = vims_factory(["a", "b", "c"])
    proc = run.start()
    for name in "abc":
        run.wait_queue(name)
    senders = [threading.Thread(target=run.send, args=(name, 0, 1500)) for name in "abc"]
    for sender in senders:
        sender.start()
    time.sleep(0.3)
    proc.kill()
    for sender in senders:
        sender.join(60)
    # Killed mid-flow: RabbitMQ still holds notifications the process had not acked.
    assert sum(sum(queue_depth(run.vhosts[name], run.pool) or (0, 0)) for name in "abc") > 0
    run.start()
    by_vim = run.raw_by_vim(4500, timeout=90)
    for name in "abc":
        # Replayed from RabbitMQ where unacked: every one there, duplicates allowed, in order of
        # first appearance.
        assert set(by_vim[name]) == set(range(1500)), name
        first_seen = list(dict.fromkeys(by_vim[name]))
        assert first_seen == sorted(first_seen), name
