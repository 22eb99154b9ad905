"""Run `eventfed stream` workers against the real Kafka, with topics of their own."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from tests.support.kafka import delete_topics_containing, read_topic
from tests.support.processes import EVENTFED, Proc, clean_env, free_port, wait_http


class StreamRun:
    def __init__(
        self, tmp_path: Path, unique: str, bootstrap: str, subscriptions: str, partitions: int = 4
    ) -> None:
        self.tmp_path = tmp_path
        self.unique = unique
        self.bootstrap = bootstrap
        self.raw_topic = f"test.raw.{unique}"
        self.events_topic = f"test.events.{unique}"
        self.state_topic = f"test.state.{unique}"
        self.dlq_topic = f"test.dlq.{unique}"
        self.fleet_parts_topic = f"test.fleet.{unique}"
        self.subscriptions_file = tmp_path / "subscriptions.yaml"
        self.subscriptions_file.write_text(subscriptions.replace("{u}", unique))
        self.base_env = clean_env(
            EVENTFED_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            EVENTFED_RAW_TOPIC=self.raw_topic,
            EVENTFED_EVENTS_TOPIC=self.events_topic,
            EVENTFED_STATE_TOPIC=self.state_topic,
            EVENTFED_DLQ_TOPIC=self.dlq_topic,
            EVENTFED_FLEET_PARTS_TOPIC=self.fleet_parts_topic,
            EVENTFED_APP_ID=f"test-stream-{unique}",
            EVENTFED_PARTITIONS=str(partitions),
            EVENTFED_SUBSCRIPTIONS_FILE=str(self.subscriptions_file),
            EVENTFED_SUBSCRIPTIONS_RELOAD_SECONDS="0.5",
        )
        self.procs: list[Proc] = []
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 5}
        )
        subprocess.run([EVENTFED, "topics"], env=self.base_env, check=True, capture_output=True)

    def start(self, name: str = "w1", wait_ready: bool = True, **settings: str) -> Proc:
        metrics_port = free_port()
        web_port = free_port()
        env = {
            **self.base_env,
            "EVENTFED_METRICS_PORT": str(metrics_port),
            "EVENTFED_WEB_PORT": str(web_port),
            "EVENTFED_DATA_DIR": str(self.tmp_path / f"data-{name}"),
            **settings,
        }
        proc = Proc(["stream"], env, self.tmp_path / f"stream-{name}.log")
        proc.metrics_port = metrics_port  # type: ignore[attr-defined]
        proc.web_port = web_port  # type: ignore[attr-defined]
        self.procs.append(proc)
        if wait_ready:
            wait_http(f"http://127.0.0.1:{metrics_port}/readyz", 120, proc)
        return proc

    def send(self, records: Iterable[tuple[str, dict[str, Any] | bytes]]) -> int:
        count = 0
        for key, value in records:
            body = value if isinstance(value, bytes) else json.dumps(value).encode()
            self.producer.produce(self.raw_topic, key=key.encode(), value=body)
            count += 1
            if count % 1000 == 0:
                self.producer.poll(0)
        assert self.producer.flush(30) == 0
        return count

    def send_paced(self, records: Iterable[tuple[str, dict[str, Any] | bytes]], per_second: float) -> int:
        """Send at about `per_second`, in 20 ms steps, as a busy cloud would."""
        count = 0
        started = time.monotonic()
        for key, value in records:
            body = value if isinstance(value, bytes) else json.dumps(value).encode()
            self.producer.produce(self.raw_topic, key=key.encode(), value=body)
            count += 1
            ahead = count / per_second - (time.monotonic() - started)
            if ahead > 0.02:
                self.producer.poll(0)
                time.sleep(ahead)
        assert self.producer.flush(30) == 0
        return count

    def read(
        self,
        topic: str,
        expected: int | None = None,
        timeout: float = 90,
        idle: float = 3,
        until: Callable[[list[Any]], bool] | None = None,
    ) -> list:
        return read_topic(self.bootstrap, topic, expected=expected, timeout=timeout, idle=idle, until=until)

    def latest_state(self, timeout: float = 90, idle: float = 4) -> dict[str, dict | None]:
        """The state topic folded to the latest value per key, as compaction would leave it."""
        state: dict[str, dict | None] = {}
        for record in read_topic(self.bootstrap, self.state_topic, timeout=timeout, idle=idle):
            value = record.value()
            state[record.key().decode()] = json.loads(value) if value is not None else None
        return state

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.alive():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.terminate(30)
        self.producer.flush(10)
        delete_topics_containing(self.bootstrap, self.unique)
