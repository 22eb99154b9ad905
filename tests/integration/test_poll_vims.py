"""`eventfed poll` serving the poll-mode VIMs of a VIMs file, with the real Kafka: each VIM's
servers reach the raw topic with its vim_id and its own checkpoint, a Nova API that never answers
delays only its own VIM, and a VIM added to the file is polled without a restart."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from tests.support.kafka import delete_topics_containing, read_notifications, read_topic
from tests.support.nova_api import FakeNovaApi
from tests.support.processes import Proc, clean_env, free_port, wait_http

pytestmark = pytest.mark.integration


def cycles_ok(metrics_port: int, vim: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = rf'eventfed_poll_cycles_total{{outcome="ok",vim="{re.escape(vim)}"}} ([0-9.]+)'
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def test_vims_poll_side_by_side_and_a_hung_nova_delays_only_its_own(tmp_path, unique, kafka_bootstrap):
    novas = {name: FakeNovaApi(token=f"token-{name}").start() for name in ("a", "c")}
    for index, nova in enumerate(novas.values()):
        nova.add_many(3 + index, datetime.now(UTC))
    # A Nova API that accepts connections and never answers.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    vim = {name: f"pollowner_{name}-{unique}" for name in ("a", "b", "c")}

    def entry(name: str) -> dict[str, object]:
        endpoint = novas[name].endpoint if name in novas else f"http://127.0.0.1:{hung.getsockname()[1]}/v2.1"
        return {
            "vim_id": vim[name],
            "mode": "poll",
            "nova_auth": "token",
            "nova_endpoint": endpoint,
            "nova_token": f"token-{name}",
        }

    vims_file = tmp_path / "vims.yaml"
    # A listen-only entry is not the poller's.
    listen_only = {
        "vim_id": f"listenowner_x-{unique}",
        "transport_url": "rabbit://guest:guest@127.0.0.1:5672/",
    }
    vims_file.write_text(json.dumps({"vims": [entry("a"), entry("b"), listen_only]}))
    raw_topic = f"test.raw.{unique}"
    metrics_port = free_port()
    proc = Proc(
        ["poll"],
        clean_env(
            EVENTFED_VIMS_FILE=str(vims_file),
            EVENTFED_VIMS_RELOAD_SECONDS="0.5",
            EVENTFED_POLL_INTERVAL="0.5",
            EVENTFED_POLL_REQUEST_TIMEOUT="8",
            EVENTFED_POLL_CHECKPOINT_TOPIC=f"test.poll.checkpoints.{unique}",
            EVENTFED_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
            EVENTFED_RAW_TOPIC=raw_topic,
            EVENTFED_DLQ_TOPIC=f"test.dlq.{unique}",
            EVENTFED_PARTITIONS="4",
            EVENTFED_METRICS_PORT=str(metrics_port),
        ),
        tmp_path / "poll.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{metrics_port}/readyz", 60, proc)
        # While b's request hangs for its 8 s timeout, a keeps cycling every half second.
        time.sleep(2)
        before = cycles_ok(metrics_port, vim["a"])
        time.sleep(3)
        assert cycles_ok(metrics_port, vim["a"]) >= before + 3
        assert cycles_ok(metrics_port, vim["b"]) == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5) as response:
            body = json.loads(response.read())
        assert body["ready"] is True and f"not polling: {vim['b']}" in body["reason"]
        # c added by editing the file: polled without a restart.
        vims_file.write_text(json.dumps({"vims": [entry("a"), entry("b"), entry("c")]}))
        by_vim: dict[str, set[str]] = defaultdict(set)
        for record in read_notifications(kafka_bootstrap, raw_topic, 3 + 4, timeout=60):
            value = json.loads(record.value())
            by_vim[value["vim_id"]].add(value["payload"]["id"])
        assert {v: len(ids) for v, ids in by_vim.items()} == {vim["a"]: 3, vim["c"]: 4}
        assert proc.alive()
        # One checkpoint per VIM, keyed by its vim_id (written again at every cycle that moves it).
        checkpoints = read_topic(
            kafka_bootstrap,
            f"test.poll.checkpoints.{unique}",
            timeout=30,
            until=lambda records: {m.key().decode() for m in records} >= {vim["a"], vim["c"]},
        )
        assert {m.key().decode() for m in checkpoints} == {vim["a"], vim["c"]}
        assert proc.terminate(60) == 0
    finally:
        if proc.alive():
            proc.kill()
        hung.close()
        for nova in novas.values():
            nova.stop()
        delete_topics_containing(kafka_bootstrap, unique)
